"""fastloop: a fast asyncio event loop written in C on libev.

    fastloop.run(main())
    asyncio.run(main(), loop_factory=fastloop.new_event_loop)   # 3.12+
    python -m fastloop app.py
"""
import asyncio as _asyncio
import os as _os
import sys as _sys

from . import _core, _helpers, _introspection
from ._loop import Loop
from ._version import __version__

__all__ = ("Loop", "new_event_loop", "run", "Handle", "TimerHandle", "Future",
           "Task")

# The policy API follows asyncio's: deprecated on 3.14 and 3.15 (asyncio's
# policy classes left its __all__ then; its functions warn when called),
# gone on 3.16, as in uvloop.
_POLICY_DEPRECATED = _sys.version_info >= (3, 14)
_POLICY_REMOVED = _sys.version_info >= (3, 16)
if not _POLICY_REMOVED:
    __all__ += ("install",)
if not _POLICY_DEPRECATED:
    __all__ += ("EventLoopPolicy",)

Handle = _core.Handle
TimerHandle = _core.TimerHandle
Future = _core.Future
Task = _core.Task

_core._set_helpers(
    handle_repr=_helpers.handle_repr,
    handle_repr_info=_helpers.handle_repr_info,
    callback_error=_helpers.callback_error,
    slow_callback=_helpers.slow_callback,
    extract_stack=_helpers.extract_stack,
    check_callback=_helpers.check_callback,
    future_repr=_helpers.future_repr,
    task_repr=_helpers.task_repr,
    task_get_stack=_helpers.task_get_stack,
    task_print_stack=_helpers.task_print_stack,
    task_step_error=_helpers.task_step_error,
    CancelledError=_asyncio.CancelledError,
    InvalidStateError=_asyncio.InvalidStateError,
    iscoroutine=_asyncio.coroutines.iscoroutine,
    get_event_loop=getattr(_asyncio.events, "_get_event_loop",
                           _asyncio.events.get_event_loop),
    enter_task=_asyncio.tasks._enter_task,
    leave_task=_asyncio.tasks._leave_task,
    current_tasks=_helpers.current_tasks_dict(),
    register_task=_asyncio.tasks._register_task,
    task_registry=_helpers.task_registry_set(),
    swap_current_task=getattr(_asyncio.tasks, "_swap_current_task", None),
    register_eager_task=getattr(_asyncio.tasks, "_register_eager_task", None),
    unregister_eager_task=getattr(_asyncio.tasks, "_unregister_eager_task", None),
    future_add_to_awaited_by=getattr(_asyncio.futures, "future_add_to_awaited_by", None),
    future_discard_from_awaited_by=getattr(_asyncio.futures,
                                           "future_discard_from_awaited_by", None),
)
# 3.14+: asyncio's all_tasks(), call graph and `asyncio ps` read fields of
# the base Task struct; fastloop keeps them current (src/futures/introspect.h).
_introspection.setup(_core)
# A forked child gets fresh kernel state (epoll, eventfd) for its loops, so
# closing or running an inherited loop never touches the parent's.
_os.register_at_fork(after_in_child=_core._after_fork_in_child)


def new_event_loop():
    """Return a new fastloop event loop."""
    return Loop()


def run(main, *, debug=None, **kwargs):
    """Run a coroutine on a new fastloop loop, as asyncio.run() does."""
    if _sys.version_info >= (3, 12):
        return _asyncio.run(main, debug=debug, loop_factory=new_event_loop,
                            **kwargs)
    if kwargs:
        raise TypeError(f"run() got unexpected keyword arguments {sorted(kwargs)}")
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError(
            "fastloop.run() cannot be called from a running event loop")
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


if _sys.version_info >= (3, 12):
    eager_task_factory = _asyncio.create_eager_task_factory(Task)
    eager_task_factory.__doc__ = "Like asyncio.eager_task_factory, with fastloop's Task."
    __all__ += ("eager_task_factory",)


def __getattr__(name):
    # Created on first use: merely importing fastloop must not touch the
    # policy machinery, which warns on newer Pythons.
    if name == "EventLoopPolicy" and not _POLICY_REMOVED:
        from ._policy import EventLoopPolicy
        if _POLICY_DEPRECATED:
            # As asyncio.DefaultEventLoopPolicy on 3.14: every access warns
            # (so the class is not cached in the module's namespace).
            import warnings
            warnings._deprecated("fastloop.EventLoopPolicy", remove=(3, 16))
        else:
            globals()["EventLoopPolicy"] = EventLoopPolicy
        return EventLoopPolicy
    if name in ("EventLoopPolicy", "install"):
        raise AttributeError(
            f"module 'fastloop' has no attribute {name!r} (it was removed in "
            f"Python 3.16, with asyncio's policies: use fastloop.run() or "
            f"asyncio.run(main(), loop_factory=fastloop.new_event_loop))")
    raise AttributeError(f"module 'fastloop' has no attribute {name!r}")


if not _POLICY_REMOVED:
    def install():
        """Make fastloop the default loop through the event loop policy.

        Deprecated on 3.12+: prefer fastloop.run() or loop_factory=.
        Removed on 3.16, with asyncio's policies.
        """
        import warnings
        if _POLICY_DEPRECATED:
            # asyncio.set_event_loop_policy()'s warning on 3.14, with the
            # way out.
            warnings._deprecated(
                "fastloop.install",
                "{name!r} is deprecated and slated for removal in Python "
                "{remove}; use fastloop.run(main()) or "
                "asyncio.run(main(), loop_factory=fastloop.new_event_loop)",
                remove=(3, 16))
        elif _sys.version_info >= (3, 12):
            warnings.warn(
                "fastloop.install() is deprecated with asyncio's policy system; "
                "use fastloop.run(main()) or "
                "asyncio.run(main(), loop_factory=fastloop.new_event_loop)",
                DeprecationWarning, stacklevel=2)
        from ._policy import set_policy
        set_policy()
