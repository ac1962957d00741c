"""Tasks and futures: memory returns to where it started, and reference
cycles through tasks and futures are collectable.

The asyncio half is the control that proves each measurement is stable.
"""
import asyncio
import ctypes
import gc
import sys
import weakref

import pytest

ROUNDS = 5              # round 1 warms up; rounds 2..5 are measured
# 200k tasks on fastloop; the asyncio control only has to show that the
# measurement is stable, and its Task is slower, so it runs fewer.
TASKS_PER_ROUND = {"fastloop": 40_000, "asyncio": 10_000}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use():
    """Bytes malloc has handed out and not taken back (glibc), or None."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    info = fn()
    return info.uordblks + info.hblkhd


def _task_workload(loop, n):
    """n tasks in batches of 2000: most step once or twice and return, the
    rest await a future, are cancelled while waiting, or fail; plus one
    future with a done callback per 16 tasks."""
    done_cbs = []

    async def plain(i):
        return i

    async def sleeper(i):
        await asyncio.sleep(0)
        return i

    async def waits(fut):
        return await fut

    async def failing():
        raise ValueError

    async def main():
        create = loop.create_task
        for _ in range(n // 2000):
            ts, to_cancel = [], []
            for i in range(0, 2000, 16):
                for j in range(8):
                    ts.append(create(sleeper(j)))
                for j in range(4):
                    ts.append(create(plain(j)))
                f = loop.create_future()
                ts.append(create(waits(f)))
                loop.call_soon(f.set_result, i)
                c = create(waits(loop.create_future()), name="c")
                to_cancel.append(c)
                ts.append(c)
                ts.append(create(failing()))
                ts.append(create(plain(i)))
                f2 = loop.create_future()
                f2.add_done_callback(done_cbs.append)
                loop.call_soon(f2.set_result, None)
                ts.append(f2)
            await asyncio.sleep(0)
            for c in to_cancel:
                c.cancel("bye")
            await asyncio.gather(*ts, return_exceptions=True)

    loop.run_until_complete(main())
    assert len(done_cbs) == n // 16


@pytest.mark.leak
def test_many_tasks_memory_returns(loop, impl):
    blocks, mem = [], []
    for _ in range(ROUNDS):
        _task_workload(loop, TASKS_PER_ROUND[impl])
        gc.collect()
        blocks.append(sys.getallocatedblocks())
        mem.append(_malloc_in_use())
    # one leaked object per task would be 10k-40k blocks per round
    assert blocks[-1] - blocks[1] < 2_000, blocks
    if mem[0] is not None:
        # 16 leaked bytes per task would be 1.9 MB over the measured rounds
        assert mem[-1] - mem[1] < 1024 * 1024, mem


@pytest.mark.leak
def test_future_callbacks_memory_returns(loop):
    def cb(f):
        pass

    def round_():
        for _ in range(10_000):
            f = loop.create_future()
            f.add_done_callback(cb)
            f.add_done_callback(cb)
            f.add_done_callback(print)
            f.remove_done_callback(print)
            f.set_result(1)
            f2 = loop.create_future()
            f2.add_done_callback(cb)
            f2.cancel("m")
            f3 = loop.create_future()
            f3.set_exception(ValueError())
            f3.exception()
        loop.run_until_complete(asyncio.sleep(0))

    blocks = []
    for _ in range(4):
        round_()
        gc.collect()
        blocks.append(sys.getallocatedblocks())
    assert blocks[-1] - blocks[1] < 2_000, blocks


# ---- reference cycles ----

def _assert_collected(ref):
    gc.collect()
    assert ref() is None, gc.get_referrers(ref()) if ref() is not None else None


def test_gc_tracks_tasks_and_futures(loop):
    fut = loop.create_future()
    assert gc.is_tracked(fut)

    async def c():
        pass

    task = loop.create_task(c())
    assert gc.is_tracked(task)
    assert task.get_coro() in gc.get_referents(task)
    loop.run_until_complete(task)


def test_cycle_done_task_result_references_task(loop):
    async def body(box):
        box.append(asyncio.current_task())
        await asyncio.sleep(0)
        return box

    task = loop.create_task(body([]))
    loop.run_until_complete(task)
    assert task.result()[0] is task
    ref = weakref.ref(task)
    del task
    _assert_collected(ref)


def test_cycle_pending_task_coroutine_references_task(loop, errors):
    fut = loop.create_future()

    async def body():
        me = asyncio.current_task()
        await fut
        return me

    task = loop.create_task(body())
    loop.run_until_complete(asyncio.sleep(0))
    assert task._fut_waiter is fut
    task._log_destroy_pending = False
    rt, rf = weakref.ref(task), weakref.ref(fut)
    del task, fut
    _assert_collected(rt)
    _assert_collected(rf)
    assert errors == []


def test_cycle_task_exception_traceback(loop, errors):
    async def body():
        me = asyncio.current_task()
        await asyncio.sleep(0)
        raise ValueError(me)

    task = loop.create_task(body())
    with pytest.raises(ValueError):
        loop.run_until_complete(task)
    ref = weakref.ref(task)
    del task
    _assert_collected(ref)


def test_cycle_future_callback_references_future(loop):
    fut = loop.create_future()
    fut.add_done_callback(lambda f, keep=fut: None)
    ref = weakref.ref(fut)
    del fut
    _assert_collected(ref)


def test_cycle_future_result_is_itself(loop):
    fut = loop.create_future()
    fut.set_result(fut)
    ref = weakref.ref(fut)
    del fut
    _assert_collected(ref)


def test_cycle_future_attribute_dict(loop):
    fut = loop.create_future()
    fut.me = fut
    ref = weakref.ref(fut)
    del fut
    _assert_collected(ref)


def test_cycle_future_exception_references_future(loop, errors):
    fut = loop.create_future()
    fut.set_exception(ValueError(fut))
    fut.exception()
    ref = weakref.ref(fut)
    del fut
    _assert_collected(ref)
    assert errors == []


def test_cycle_task_name_and_context(loop):
    import contextvars
    holder = contextvars.ContextVar("holder")

    async def body():
        holder.set(asyncio.current_task())
        await asyncio.sleep(0)

    task = loop.create_task(body())
    task.set_name("named")
    loop.run_until_complete(task)
    ref = weakref.ref(task)
    del task
    _assert_collected(ref)


def test_cycle_gathered_tasks(loop):
    refs = []

    async def child(box):
        box.append(asyncio.current_task())
        await asyncio.sleep(0)

    async def main():
        box = []
        ts = [loop.create_task(child(box)) for _ in range(10)]
        refs.extend(weakref.ref(t) for t in ts)
        await asyncio.gather(*ts)
        return box

    box = loop.run_until_complete(main())
    del box
    gc.collect()
    assert [r() for r in refs] == [None] * 10


def test_loop_dropped_with_pending_tasks_collectable(loop_factory):
    lp = loop_factory()
    seen = []
    lp.set_exception_handler(lambda l, ctx: seen.append(ctx["message"]))

    async def stuck():
        await lp.create_future()

    t = lp.create_task(stuck())
    lp.run_until_complete(asyncio.sleep(0))
    rt, rl = weakref.ref(t), weakref.ref(lp)
    lp.close()
    del t, lp
    gc.collect()
    assert rt() is None
    assert rl() is None
    assert seen == ["Task was destroyed but it is pending!"]
