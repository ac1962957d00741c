"""Futures and Tasks made with __new__ and no __init__ (issue #10, C2).

Every operation on one ends in asyncio's exception (or asyncio's answer),
never in a crash: before the fix, `await fastloop.Future.__new__(Future)`
inside a task dereferenced a NULL loop. Each case runs in a fresh
interpreter, on asyncio's own C Future/Task and on fastloop's, so a crash
is a failing test naming the operation, not a dead test session.
"""
import json
import sys

import pytest

from fl_support import describe, run_py

PROBE = r'''
import asyncio, gc, json, sys
if IMPL == "fastloop":
    import fastloop
    Future, Task = fastloop.Future, fastloop.Task
else:
    Future, Task = asyncio.Future, asyncio.Task
cls = {"Future": Future, "Task": Task}[sys.argv[1]]
loop = new_loop()
asyncio.set_event_loop(loop)

async def await_it(obj):
    return await obj

def set_blocking(obj):
    obj._asyncio_future_blocking = True

OPS = {
    "repr": repr,
    "await in a task": lambda o: loop.run_until_complete(
        asyncio.wait_for(await_it(o), 5)),
    "__await__": lambda o: o.__await__(),
    "iter": iter,
    "result": lambda o: o.result(),
    "exception": lambda o: o.exception(),
    "done": lambda o: o.done(),
    "cancelled": lambda o: o.cancelled(),
    "get_loop": lambda o: o.get_loop(),
    "cancel": lambda o: o.cancel(),
    "cancel(msg)": lambda o: o.cancel("m"),
    "add_done_callback": lambda o: o.add_done_callback(print),
    "remove_done_callback": lambda o: o.remove_done_callback(print),
    "set_result": lambda o: o.set_result(1),
    "set_exception": lambda o: o.set_exception(ValueError),
    "_make_cancelled_error": lambda o: o._make_cancelled_error(),
    "_state": lambda o: o._state,
    "_result": lambda o: o._result,
    "_exception": lambda o: o._exception,
    "_loop": lambda o: o._loop,
    "_callbacks": lambda o: o._callbacks,
    "_source_traceback": lambda o: o._source_traceback,
    "_cancel_message": lambda o: o._cancel_message,
    "_log_traceback": lambda o: o._log_traceback,
    "_asyncio_future_blocking": lambda o: o._asyncio_future_blocking,
    "_asyncio_future_blocking = True": set_blocking,
    "hash": lambda o: type(hash(o)).__name__,
    "gc.collect": lambda o: type(gc.collect()).__name__,
    "get_coro": lambda o: o.get_coro(),
    "get_context": lambda o: o.get_context(),
    "get_name": lambda o: o.get_name(),
    "set_name": lambda o: o.set_name("n"),
    "get_stack": lambda o: o.get_stack(),
    "print_stack": lambda o: o.print_stack(),
    "cancelling": lambda o: o.cancelling(),
    "uncancel": lambda o: o.uncancel(),
    "_coro": lambda o: o._coro,
    "_fut_waiter": lambda o: o._fut_waiter,
    "_must_cancel": lambda o: o._must_cancel,
    "_log_destroy_pending": lambda o: o._log_destroy_pending,
}
for name in sys.argv[2:]:
    print("OP", name, flush=True)
    obj = cls.__new__(cls)
    try:
        r = OPS[name](obj)
        out = ["returns", r if r is None or isinstance(r, (bool, int, str))
               else type(r).__name__]
    except BaseException as e:
        out = ["raises", type(e).__name__, str(e)]
    print("RESULT", json.dumps([name, out]), flush=True)
    del obj
    gc.collect()
loop.close()
print("DONE", flush=True)
'''

NOT_INIT = "Future object is not initialized."
COMMON = {
    "repr": ["raises", "RuntimeError", NOT_INIT],
    "await in a task": ["raises", "RuntimeError", NOT_INIT],
    "__await__": ["raises", "RuntimeError", NOT_INIT],
    "iter": ["raises", "RuntimeError", NOT_INIT],
    "result": ["raises", "InvalidStateError", NOT_INIT],
    "exception": ["raises", "InvalidStateError", NOT_INIT],
    "done": ["returns", False],
    "cancelled": ["returns", False],
    "get_loop": ["raises", "RuntimeError", NOT_INIT],
    "add_done_callback": ["raises", "RuntimeError", "uninitialized Future object"],
    "remove_done_callback": ["raises", "RuntimeError", NOT_INIT],
    "_make_cancelled_error": ["returns", "CancelledError"],
    "_state": ["raises", "RuntimeError", NOT_INIT],
    "_result": ["raises", "RuntimeError", NOT_INIT],
    "_exception": ["raises", "RuntimeError", NOT_INIT],
    "_loop": ["returns", None],
    "_callbacks": ["raises", "RuntimeError", NOT_INIT],
    "_source_traceback": ["returns", None],
    "_cancel_message": ["returns", None],
    "_log_traceback": ["raises", "RuntimeError", NOT_INIT],
    "_asyncio_future_blocking": ["returns", False],
    "_asyncio_future_blocking = True": ["raises", "RuntimeError", NOT_INIT],
    "hash": ["returns", "int"],
    "gc.collect": ["returns", "int"],
}
FUTURE = dict(COMMON, **{
    "cancel": ["raises", "RuntimeError", NOT_INIT],
    "cancel(msg)": ["raises", "RuntimeError", NOT_INIT],
    "set_result": ["raises", "RuntimeError", NOT_INIT],
    "set_exception": ["raises", "RuntimeError", NOT_INIT],
})
TASK = dict(COMMON, **{
    # asyncio's Task.cancel() needs no loop: it only records the request.
    "cancel": ["returns", True],
    "cancel(msg)": ["returns", True],
    "set_result": ["raises", "RuntimeError",
                   "Task does not support set_result operation"],
    "set_exception": ["raises", "RuntimeError",
                      "Task does not support set_exception operation"],
    "get_coro": ["returns", None],
    "get_name": ["returns", None],
    "set_name": ["returns", None],
    "get_stack": ["raises", "RuntimeError", NOT_INIT],
    "print_stack": ["raises", "RuntimeError", NOT_INIT],
    "_coro": ["returns", None],
    "_fut_waiter": ["returns", None],
    "_must_cancel": ["returns", False],
    "_log_destroy_pending": ["returns", False],
})
if sys.version_info >= (3, 11):
    TASK["cancelling"] = ["returns", 0]
    TASK["uncancel"] = ["returns", 0]
if sys.version_info >= (3, 12):
    TASK["get_context"] = ["returns", None]

# asyncio's own C Task crashes on these when uninitialized (not fastloop's):
# get_coro() up to 3.12 (seen on 3.12.1), get_context() on 3.12-3.13
# (CPython gh-154871).
ASYNCIO_CRASHES = set()
if sys.version_info < (3, 13):
    ASYNCIO_CRASHES.add("get_coro")
if (3, 12) <= sys.version_info < (3, 14):
    ASYNCIO_CRASHES.add("get_context")


def run_probe(impl, cls, ops):
    proc = run_py(PROBE, impl, args=[cls, *ops], timeout=60)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            name, out = json.loads(line[len("RESULT "):])
            results[name] = out
    ops_started = [ln[3:] for ln in proc.stdout.splitlines() if ln.startswith("OP ")]
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("DONE"), (
        f"{impl} {cls}: died in {ops_started[-1:]}: {describe(proc)[-3000:]}")
    return results


@pytest.mark.parametrize("cls, expected", [("Future", FUTURE), ("Task", TASK)])
def test_uninitialized_operations(impl, cls, expected):
    ops = [op for op in expected
           if not (impl == "asyncio" and cls == "Task" and op in ASYNCIO_CRASHES)]
    results = run_probe(impl, cls, ops)
    wrong = {op: results.get(op) for op in ops if results.get(op) != expected[op]}
    assert not wrong, f"{impl} {cls}: {wrong}"


@pytest.mark.parametrize("cls", ["Future", "Task"])
def test_await_uninitialized_in_task(impl, cls):
    """C2: `await Future.__new__(Future)` in a task raises RuntimeError into
    the coroutine (fastloop dereferenced a NULL loop in handle_yield)."""
    results = run_probe(impl, cls, ["await in a task"])
    assert results["await in a task"] == ["raises", "RuntimeError", NOT_INIT]


YIELD_UNINIT = r'''
import asyncio, types
if IMPL == "fastloop":
    import fastloop
    Future = fastloop.Future
else:
    Future = asyncio.Future
loop = new_loop()
seen = []
loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

@types.coroutine
def bare_yield(obj):
    yield obj

async def main():
    await bare_yield(Future.__new__(Future))

task = loop.create_task(main())
for _ in range(5):
    loop.run_until_complete(asyncio.sleep(0))
exc = seen[0]["exception"] if seen else None
print("REPORTED", type(exc).__name__, exc, "| done:", task.done())
task.cancel()
loop.run_until_complete(asyncio.sleep(0))
loop.close()
print("DONE")
'''


def test_yield_uninitialized_future(impl):
    """A coroutine yielding (not awaiting) an uninitialized future: the
    step's error message needs the future's repr, which fails: both loops
    report that failure to the exception handler, and nothing crashes."""
    proc = run_py(YIELD_UNINIT, impl)
    assert proc.returncode == 0 and "DONE" in proc.stdout, describe(proc)
    assert f"REPORTED RuntimeError {NOT_INIT} | done: False" in proc.stdout, (
        describe(proc))
