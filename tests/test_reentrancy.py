"""Python code running between a check and the C code that relies on it, in
Future, Task and Handle (issue #10, class 1).

The Python code comes in where C code calls out: an exception class's
__init__, __eq__, a debug-mode stack capture (reached here through a
profile hook), and, on 3.10/3.11, the cyclic collector that any allocation
can start (reached through gc.callbacks with a threshold of 1; from 3.12 on
the collector runs only between bytecodes, and these cases pass trivially).
Each case runs in a fresh interpreter on both loops: some of the bugs were
use-after-free that only AddressSanitizer sees (scripts/asan).
"""
import sys

import pytest

from fl_support import describe, run_py


def run_case(impl, code):
    proc = run_py(code, impl, pyargs=["-W", "ignore"])
    assert proc.returncode == 0 and "DONE" in proc.stdout, describe(proc)
    return proc.stdout


def test_set_exception_class_finishes_future(impl):
    """set_exception(cls) calls cls(): when that finishes the future, the
    future keeps its result and set_exception raises InvalidStateError
    (fastloop stored the exception over the result)."""
    out = run_case(impl, r'''
loop = new_loop()
fut = loop.create_future()
class Sneaky(Exception):
    def __init__(self):
        fut.set_result("first")
try:
    fut.set_exception(Sneaky)
    print("SET_EXCEPTION ok")
except Exception as e:
    print("SET_EXCEPTION", type(e).__name__)
print("RESULT", fut.result())
loop.close()
print("DONE")
''')
    assert "SET_EXCEPTION InvalidStateError" in out
    assert "RESULT first" in out


COLLECTOR_HOOK = r'''
import asyncio, gc
loop = new_loop()
armed = []
def on_collect(phase, info):
    if armed and phase == "start":
        action = armed.pop()
        action()
def while_collecting(action, call, tries=1000):
    """call() with `action` run by the first collection it starts."""
    gc.collect()
    gc.callbacks.append(on_collect)
    gc.set_threshold(1, 1, 1)
    try:
        for _ in range(tries):
            armed[:] = [action]
            call()
            if not armed:
                return True
        return False
    finally:
        armed.clear()
        gc.set_threshold(700, 10, 10)
        gc.callbacks.remove(on_collect)
def spin():
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))
'''


def test_add_done_callback_while_collector_finishes_future(impl):
    """add_done_callback() copies the context, which allocates: a collection
    that finishes the future meanwhile must not make the callback be added
    to the done future's list, where it is never called (fastloop lost it)."""
    out = run_case(impl, COLLECTOR_HOOK + r'''
fut = loop.create_future()
called = []
def done_cb(f):
    called.append(f)
added = [0]
def add():
    if not fut.done():
        fut.add_done_callback(done_cb)
        added[0] += 1
while_collecting(lambda: fut.set_result(1), add)
spin()
print("CALLED", len(called), "OF", added[0])
loop.close()
print("DONE")
''')
    called, added = out.split("CALLED ")[1].split()[0::2][:2]
    assert called == added, out


@pytest.mark.parametrize("change", ["add", "remove"])
def test_callbacks_attribute_while_collector_changes_them(impl, change):
    """future._callbacks allocates an item per callback: a collection that
    adds or removes callbacks meanwhile must not leave the list with holes
    or write past its end (fastloop did both)."""
    if impl == "asyncio" and change == "add" and sys.version_info < (3, 12):
        pytest.skip("asyncio's own C Future sizes its _callbacks list before "
                    "an allocation that can run the collector, and writes "
                    "past it here (heap corruption on 3.10/3.11)")
    out = run_case(impl, COLLECTOR_HOOK + r'''
fut = loop.create_future()
async def waiter():
    await fut
task = loop.create_task(waiter())
spin()                     # the task waits on fut: its wakeup is a callback
def cb(f):
    pass
fut.add_done_callback(cb)
fut.add_done_callback(cb)
def change():
    if CHANGE == "add":
        for _ in range(20):
            fut.add_done_callback(print)
    else:
        fut.remove_done_callback(cb)
seen = []
while_collecting(change, lambda: seen.append(fut._callbacks))
for lst in seen:
    for item in lst:
        assert len(item) == 2, item
print("ITEMS", sum(len(lst) for lst in seen))
fut.cancel()
spin()
loop.close()
print("DONE")
'''.replace("CHANGE", repr(change)))
    assert "ITEMS" in out


def test_timer_handle_eq_cancels_handle(impl):
    """TimerHandle equality compares the args tuples; an element's __eq__
    that cancels the handle frees that tuple in the middle of the
    comparison (fastloop compared through borrowed references)."""
    out = run_case(impl, r'''
loop = new_loop()
when = loop.time() + 100
handles = []
class Cancels:
    def __eq__(self, other):
        for h in handles:
            h.cancel()
        return True
    __hash__ = object.__hash__
a = loop.call_at(when, print, Cancels(), [1, 2, 3], "x" * 50)
b = loop.call_at(when, print, Cancels(), [1, 2, 3], "x" * 50)
handles[:] = [a, b]
print("EQUAL", a == b)
loop.close()
print("DONE")
''')
    assert "EQUAL True" in out


@pytest.mark.parametrize("impl", ["fastloop"])
def test_step_scheduled_on_foreign_loop_while_task_loses_its_loop(impl):
    """Task.__init__ on a loop that is not fastloop's, with a collection
    started at its 1st, 2nd, ... allocation in turn, which re-initializes
    the task in a thread with no event loop (so that the task loses its
    loop). fastloop crashed where __init__ schedules the first step through
    loop.call_soon(): it read the loop before allocating the step callable,
    and called a NULL loop. fastloop only: asyncio's own C Task reads its
    loop after the same kind of allocation."""
    out = run_case(impl, r'''
import asyncio, gc, threading, fastloop
foreign = asyncio.new_event_loop()
async def coro():
    return 1
countdown = [-1]
def on_collect(phase, info):
    if phase != "start" or countdown[0] < 0:
        return
    countdown[0] -= 1
    if countdown[0] == -1:
        # re-initialized in a thread with no event loop: the loop is dropped
        th = threading.Thread(target=reinit_without_loop)
        th.start(); th.join()
def reinit_without_loop():
    try:
        task.__init__(spare)
    except RuntimeError:
        pass
outcomes = set()
gc.callbacks.append(on_collect)
for n in range(60):
    task = fastloop.Task.__new__(fastloop.Task)
    first, spare = coro(), coro()
    gc.collect()
    gc.set_threshold(1, 1, 1)
    countdown[0] = n
    try:
        task.__init__(first, loop=foreign)
        outcomes.add("ok")
    except RuntimeError as e:
        outcomes.add(str(e))
    countdown[0] = -1
    gc.set_threshold(700, 10, 10)
    first.close(); spare.close()
gc.callbacks.remove(on_collect)
print("OUTCOMES", sorted(outcomes))
foreign.close()
print("DONE")
''')
    assert "OUTCOMES" in out
