"""Task.__init__() called again on a task that already runs (issue #10, C3).

asyncio's Task (3.10-3.14) lets __init__ run again: it resets the future
half, checks the coroutine, and only then replaces the coroutine and the
context. A task whose re-initialization fails keeps running its own
coroutine: the step already queued runs it. fastloop cleared the context
and the coroutine before checking the argument, and the queued step then
entered a NULL context. From 3.15 on asyncio refuses any second __init__
(RuntimeError), and so does fastloop.

Each case runs in a fresh interpreter on both loops.
"""
import sys

import pytest

from fl_support import describe, run_py

PY315 = sys.version_info >= (3, 15)
REFUSED = "RuntimeError"    # 3.15+: "... object is already initialized"

PRELUDE = r'''
import asyncio, sys, threading
loop = new_loop()
seen = []
loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

def spin(n=5):
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))

def reinit(task, *args, **kwargs):
    try:
        task.__init__(*args, **kwargs)
        print("REINIT ok")
    except BaseException as e:
        print("REINIT", type(e).__name__)

def outcome(task):
    if not task.done():
        return "pending"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return f"raised {type(exc).__name__}: {exc}" if exc else f"result {task.result()!r}"

def reported():
    return [f"{type(c.get('exception')).__name__}: {c.get('exception')}" for c in seen]

async def c42():
    return 42

async def new_coro():
    return "new"
'''


def run_case(impl, code):
    proc = run_py(PRELUDE + code, impl, pyargs=["-W", "ignore"])
    assert proc.returncode == 0 and "DONE" in proc.stdout, describe(proc)
    return proc.stdout


def reinit_error(below_315):
    return REFUSED if PY315 else below_315


def test_scheduled_task_bad_coroutine(impl):
    """C3: the queued first step runs the task's own coroutine."""
    out = run_case(impl, r'''
t = loop.create_task(c42())
reinit(t, 1, loop=loop)
spin()
print("OUTCOME", outcome(t), reported())
print("DONE")
''')
    assert f"REINIT {reinit_error('TypeError')}" in out
    assert "OUTCOME result 42 []" in out


def test_waiting_task_bad_coroutine(impl):
    """A task waiting on a future: the wakeup steps its own coroutine."""
    out = run_case(impl, r'''
fut = loop.create_future()
async def first():
    return await fut
t = loop.create_task(first())
called = []
t.add_done_callback(lambda f: called.append("called"))
spin()
reinit(t, 1, loop=loop)
fut.set_result(5)
spin()
print("OUTCOME", outcome(t), reported())
print("CALLBACKS", called)
print("DONE")
''')
    assert f"REINIT {reinit_error('TypeError')}" in out
    assert "OUTCOME result 5 []" in out
    # asyncio (before 3.15) resets the future half, done callbacks included,
    # before it looks at the coroutine; fastloop checks the arguments first
    # and leaves a task whose re-initialization failed untouched.
    if impl == "asyncio" and not PY315:
        assert "CALLBACKS []" in out
    else:
        assert "CALLBACKS ['called']" in out


def test_scheduled_task_bad_name(impl):
    """A name whose str() raises: fastloop fails before touching the task,
    so its own coroutine runs; asyncio has replaced the coroutine with the
    new one by the time it converts the name, so the new one runs."""
    out = run_case(impl, r'''
class BadName:
    def __str__(self):
        raise ValueError("no name")
t = loop.create_task(c42())
reinit(t, new_coro(), loop=loop, name=BadName())
spin()
print("OUTCOME", outcome(t), reported())
print("DONE")
''')
    assert f"REINIT {reinit_error('ValueError')}" in out
    if impl == "asyncio" and not PY315:
        assert "OUTCOME result 'new' []" in out
    else:
        assert "OUTCOME result 42 []" in out


def test_scheduled_task_bad_loop(impl):
    """loop=1: the future half keeps that "loop" (its get_debug() failed);
    the queued step still runs the coroutine, on the loop that queued it."""
    out = run_case(impl, r'''
t = loop.create_task(c42())
reinit(t, c42(), loop=1)
spin()
print("OUTCOME", outcome(t), reported())
print("DONE")
''')
    assert f"REINIT {reinit_error('AttributeError')}" in out
    if PY315:
        assert "OUTCOME result 42 []" in out
    elif sys.version_info >= (3, 14):
        # 3.14 enters a task only on its loop, as the running loop
        assert "OUTCOME pending ['RuntimeError: loop 1 is not the running loop']" in out
    else:
        assert "OUTCOME result 42 []" in out


@pytest.mark.parametrize("impl", ["fastloop"])
def test_scheduled_task_no_event_loop(impl):
    """Re-initialized with loop=None where there is no event loop: the task
    is left without a loop while its step is queued. The step reports that
    to the loop that runs it. fastloop only: asyncio's C Task crashes on
    this (its step enters the NULL loop)."""
    out = run_case(impl, r'''
t = loop.create_task(c42())
th = threading.Thread(target=reinit, args=(t, c42()))
th.start(); th.join()
spin()
print("OUTCOME", outcome(t), reported())
print("DONE")
''')
    if PY315:
        assert f"REINIT {REFUSED}" in out and "OUTCOME result 42 []" in out
    else:
        assert "REINIT RuntimeError" in out
        assert ("OUTCOME pending ['RuntimeError: Future object is not "
                "initialized.']") in out


@pytest.mark.parametrize("impl", ["fastloop"])
def test_reinit_inside_own_step(impl):
    """The coroutine re-initializes its own task with another coroutine:
    the running one must stay alive until it yields (fastloop holds it).
    fastloop only: asyncio's C Task drops its last reference to the running
    coroutine there, which crashes on 3.13 (3.11 survives by luck)."""
    out = run_case(impl, r'''
async def other():
    return "other"
async def main():
    try:
        asyncio.current_task().__init__(other(), loop=loop)
    except RuntimeError as e:
        print("REINIT RuntimeError")
    await asyncio.sleep(0)
    return "main"
t = loop.create_task(main())
spin(10)
print("OUTCOME", outcome(t), reported())
print("DONE")
''')
    if PY315:
        assert "REINIT RuntimeError" in out
        assert "OUTCOME result 'main' []" in out
    else:
        # The new coroutine's first step finishes the task; the step the
        # old coroutine's sleep(0) queued then finds it done.
        assert "OUTCOME result 'other' [" in out
        assert "InvalidStateError: _step(): already done" in out


def test_stale_wakeup_after_reinit(impl):
    """Re-initialized while waiting on one future, the task waits on another
    one; the first one's completion still wakes it (asyncio's __wakeup
    stays registered) with the first future's result. fastloop read the
    task's current waiter as one of its own futures: here a pure-Python
    future, read past its end."""
    out = run_case(impl, r'''
first_fut = loop.create_future()
py_fut = asyncio.futures._PyFuture(loop=loop)
async def first():
    return await first_fut
async def second():
    return await py_fut
t = loop.create_task(first())
spin()
reinit(t, second(), loop=loop)
spin()
first_fut.set_result(1)
spin()
print("OUTCOME", outcome(t), reported())
print("DONE")
''')
    if PY315:
        assert f"REINIT {REFUSED}" in out and "OUTCOME result 1 []" in out
    else:
        assert "OUTCOME raised RuntimeError: await wasn't used with future []" in out


def test_reinit_then_gc(impl):
    """Every kind of failed re-initialization, then the loop runs, the
    tasks are dropped and collected: nothing crashes."""
    out = run_case(impl, r'''
import gc
class BadName:
    def __str__(self):
        raise ValueError
tasks = []
for args, kwargs in [((1,), {"loop": loop}), ((c42(),), {"loop": 1}),
                     ((c42(),), {"loop": loop, "name": BadName()}),
                     ((c42(),), {"loop": loop, "context": 1}), ((), {})]:
    t = loop.create_task(c42())
    reinit(t, *args, **kwargs)
    tasks.append(t)
spin()
for t in tasks:
    try:
        repr(t); t.cancel(); t.get_stack(); t.get_coro()
    except Exception:
        pass
spin()
del tasks, t
gc.collect()
print("DONE")
''')
    assert "DONE" in out


def test_context_not_a_context(impl):
    """3.15+ refuses it in __init__ (gh-157301); before, the task is made
    and each step fails on it, reported to the exception handler (asyncio's
    Handle fails calling context.run, fastloop entering the context)."""
    out = run_case(impl, r'''
co = c42()
try:
    t = asyncio.Task(co, loop=loop, context="not a context") if IMPL == "asyncio" \
        else __import__("fastloop").Task(co, loop=loop, context="not a context")
    print("MADE")
    spin()
    print("OUTCOME", outcome(t), len(seen))
    t._log_destroy_pending = False
except TypeError as e:
    print("REFUSED", e)
co.close()
print("DONE")
''')
    if PY315:
        assert "REFUSED a contextvars.Context was expected, got str" in out
    else:
        assert "OUTCOME pending 1" in out
