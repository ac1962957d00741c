"""Cold paths the C core calls back into: reprs, error reports, debug aids.

They run only when something is printed, fails, or debug mode is on, so they
stay in Python and reuse asyncio's own formatting, which keeps fastloop's
messages identical to asyncio's on every Python version.
"""
import inspect
import sys
from asyncio import base_events, base_futures, base_tasks, format_helpers
from asyncio.log import logger

_SOURCE_TAKES_DEBUG = "debug" in inspect.signature(
    format_helpers._format_callback_source).parameters


def callback_source(callback, args, debug):
    if _SOURCE_TAKES_DEBUG:
        return format_helpers._format_callback_source(callback, args, debug=debug)
    return format_helpers._format_callback_source(callback, args)


def handle_repr_info(handle):
    """asyncio's Handle._repr_info() / TimerHandle._repr_info()."""
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if hasattr(handle, "_when"):
        info.append(f"when={handle._when}")
    if handle._callback is not None:
        info.append(callback_source(handle._callback, handle._args,
                                    handle._loop.get_debug()))
    if handle._source_traceback:
        frame = handle._source_traceback[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return info


def handle_repr(handle):
    return "<{}>".format(" ".join(handle_repr_info(handle)))


def callback_error(handle, exc):
    source = callback_source(handle._callback, handle._args,
                             handle._loop.get_debug())
    context = {
        "message": f"Exception in callback {source}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def slow_callback(handle, seconds):
    # A task step runs from the ready queue without a Handle: asyncio shows
    # such a step as the task itself.
    text = (base_events._format_handle(handle) if hasattr(handle, "_callback")
            else repr(handle))
    logger.warning("Executing %s took %.3f seconds", text, seconds)


def extract_stack():
    # Frame 0 is this helper; 1 is the code that called into the loop
    # (the C method in between has no Python frame).
    return format_helpers.extract_stack(sys._getframe(1))


def check_callback(callback, method):
    # asyncio's check only reads its arguments, never the loop.
    base_events.BaseEventLoop._check_callback(None, callback, method)


# ---- Future and Task: reprs and stacks come from asyncio itself ----

def future_repr(fut):
    if hasattr(base_futures, "_future_repr"):
        return base_futures._future_repr(fut)
    return "<{} {}>".format(type(fut).__name__, " ".join(repr_info(fut)))


def task_repr(task):
    if hasattr(base_tasks, "_task_repr"):
        return base_tasks._task_repr(task)
    return "<{} {}>".format(type(task).__name__, " ".join(repr_info(task)))


def task_get_stack(task, limit):
    return base_tasks._task_get_stack(task, limit)


def task_print_stack(task, limit, file):
    return base_tasks._task_print_stack(task, limit, file)


def task_step_error(task, exc):
    """A task step run from the ready queue failed outside the coroutine
    (asyncio reports the same through the failing callback's handle)."""
    task.get_loop().call_exception_handler({
        "message": f"Exception in callback {task!r}.__step()",
        "exception": exc,
        "task": task,
    })


def task_registry_set():
    """The set of weakrefs inside asyncio's registry of tasks (what
    all_tasks() reads), when it is a stock WeakSet; None otherwise."""
    import weakref
    from asyncio import tasks
    registry = getattr(tasks, "_scheduled_tasks", None)
    if registry is None:
        registry = getattr(tasks, "_all_tasks", None)
    if type(registry) is weakref.WeakSet and type(registry.data) is set:
        return registry.data
    return None


def current_tasks_dict():
    """The dict behind asyncio.current_task() (3.10-3.13, C implementation),
    which the C Task may update directly; None where that is not the case."""
    try:
        import _asyncio
    except ImportError:
        return None
    from asyncio import tasks
    tasks_dict = getattr(_asyncio, "_current_tasks", None)
    if (type(tasks_dict) is dict and tasks._enter_task is _asyncio._enter_task
            and tasks._leave_task is _asyncio._leave_task):
        return tasks_dict
    return None
