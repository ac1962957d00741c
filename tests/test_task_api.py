"""asyncio's task APIs with each implementation's Task and Future:
timeout, TaskGroup, wait_for, gather, wait, as_completed, shield, Runner."""
import asyncio
import signal
import sys

import pytest

from fl_support import PY311, PY312, describe, run, run_py


async def _value(x, delay=0):
    await asyncio.sleep(delay)
    return x


async def _fail(exc, delay=0):
    await asyncio.sleep(delay)
    raise exc


# ---- timeout (3.11+) ----

@pytest.mark.skipif(not PY311, reason="asyncio.timeout is 3.11+")
def test_timeout_expires(loop):
    async def main():
        t = asyncio.current_task()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01) as cm:
                await asyncio.sleep(3600)
        assert cm.expired()
        assert t.cancelling() == 0
        return "after"

    assert run(loop, main()) == "after"


@pytest.mark.skipif(not PY311, reason="asyncio.timeout is 3.11+")
def test_timeout_not_expired(loop):
    async def main():
        async with asyncio.timeout(10) as cm:
            await asyncio.sleep(0)
        assert not cm.expired()
        async with asyncio.timeout(None):
            await asyncio.sleep(0)
        return 1

    assert run(loop, main()) == 1


@pytest.mark.skipif(not PY311, reason="asyncio.timeout is 3.11+")
def test_timeout_nested_and_outer_cancel(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                async with asyncio.timeout(10):
                    await asyncio.sleep(3600)

    run(loop, main())

    async def cancelled_inside():
        async with asyncio.timeout(10):
            await asyncio.sleep(3600)

    async def outer():
        t = loop.create_task(cancelled_inside())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert run(loop, outer()) is True


# ---- TaskGroup (3.11+) ----

@pytest.mark.skipif(not PY311, reason="TaskGroup is 3.11+")
def test_taskgroup_results(loop, task_cls):
    async def main():
        async with asyncio.TaskGroup() as tg:
            ts = [tg.create_task(_value(i)) for i in range(5)]
        assert all(type(t) is task_cls for t in ts)
        return [t.result() for t in ts]

    assert run(loop, main()) == list(range(5))


@pytest.mark.skipif(not PY311, reason="TaskGroup is 3.11+")
def test_taskgroup_error_cancels_siblings(loop):
    async def main():
        sibling = None
        with pytest.raises(ExceptionGroup) as ei:
            async with asyncio.TaskGroup() as tg:
                sibling = tg.create_task(asyncio.sleep(3600))
                tg.create_task(_fail(ValueError("v"), 0.001))
        assert sibling.cancelled()
        assert [type(e) for e in ei.value.exceptions] == [ValueError]
        return "ok"

    assert run(loop, main()) == "ok"


@pytest.mark.skipif(not PY311, reason="TaskGroup is 3.11+")
def test_taskgroup_outer_cancel(loop):
    started = []

    async def body():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(asyncio.sleep(3600))
            started.append(1)
            await asyncio.sleep(3600)

    async def main():
        t = loop.create_task(body())
        await asyncio.sleep(0.001)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    run(loop, main())
    assert started == [1]


# ---- wait_for ----

def test_wait_for_result(loop):
    async def main():
        return await asyncio.wait_for(_value(3, 0.001), 5)

    assert run(loop, main()) == 3


def test_wait_for_timeout(loop):
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(), 0.01)

    run(loop, main())
    assert cancelled == [1]


def test_wait_for_future(loop):
    async def main():
        fut = loop.create_future()
        loop.call_later(0.001, fut.set_result, "f")
        return await asyncio.wait_for(fut, 5)

    assert run(loop, main()) == "f"


def test_wait_for_cancel_outer(loop):
    async def main():
        inner = loop.create_task(asyncio.sleep(3600))
        outer = loop.create_task(asyncio.wait_for(inner, 10))
        await asyncio.sleep(0.001)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await asyncio.sleep(0)
        return inner.cancelled()

    assert run(loop, main()) is True


# ---- gather ----

def test_gather_results_order(loop):
    async def main():
        return await asyncio.gather(_value(1, 0.002), _value(2), _value(3, 0.001))

    assert run(loop, main()) == [1, 2, 3]


def test_gather_return_exceptions(loop):
    async def main():
        return await asyncio.gather(_value(1), _fail(KeyError("k")),
                                    return_exceptions=True)

    res = run(loop, main())
    assert res[0] == 1 and type(res[1]) is KeyError


def test_gather_first_exception_propagates(loop):
    async def main():
        sib = loop.create_task(_value(2, 0.01))
        with pytest.raises(KeyError):
            await asyncio.gather(sib, _fail(KeyError("k")))
        assert not sib.done()        # gather does not cancel siblings
        return await sib

    assert run(loop, main()) == 2


def test_gather_cancel_outer_cancels_children(loop):
    async def main():
        children = [loop.create_task(asyncio.sleep(3600)) for _ in range(3)]
        g = asyncio.gather(*children)
        await asyncio.sleep(0)
        assert g.cancel("stop") is True
        with pytest.raises(asyncio.CancelledError):
            await g
        return [c.cancelled() for c in children]

    assert run(loop, main()) == [True, True, True]


def test_gather_child_cancelled(loop):
    async def main():
        child = loop.create_task(asyncio.sleep(3600))
        other = loop.create_task(_value(1))
        g = asyncio.gather(child, other)
        await asyncio.sleep(0)
        child.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g

    run(loop, main())


def test_gather_child_cancelled_return_exceptions(loop):
    async def main():
        child = loop.create_task(asyncio.sleep(3600))
        g = asyncio.gather(child, _value(1), return_exceptions=True)
        await asyncio.sleep(0)
        child.cancel("m")
        res = await g
        assert type(res[0]) is asyncio.CancelledError
        return res[1]

    assert run(loop, main()) == 1


def test_gather_same_coroutine_future_twice(loop):
    async def main():
        f = loop.create_future()
        loop.call_soon(f.set_result, "x")
        return await asyncio.gather(f, f)

    assert run(loop, main()) == ["x", "x"]


# ---- wait / as_completed / shield ----

def test_wait_all_and_first(loop):
    async def main():
        a = loop.create_task(_value("a", 0.001))
        b = loop.create_task(_value("b", 3600))
        done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {a} and pending == {b}
        done, pending = await asyncio.wait({b}, timeout=0.001)
        assert done == set() and pending == {b}
        b.cancel()
        done, pending = await asyncio.wait({a, b})
        assert pending == set()
        return b.cancelled()

    assert run(loop, main()) is True


def test_wait_first_exception(loop):
    async def main():
        a = loop.create_task(_fail(ValueError(), 0.001))
        b = loop.create_task(_value("b", 3600))
        done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_EXCEPTION)
        assert done == {a} and pending == {b}
        b.cancel()
        a.exception()

    run(loop, main())


def test_as_completed(loop):
    async def main():
        aws = [_value(3, 0.003), _value(1, 0.001), _value(2, 0.002)]
        out = []
        for f in asyncio.as_completed(aws):
            out.append(await f)
        return out

    assert run(loop, main()) == [1, 2, 3]


def test_as_completed_timeout(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            for f in asyncio.as_completed([asyncio.sleep(3600)], timeout=0.001):
                await f

    run(loop, main())


def test_shield(loop):
    async def main():
        inner = loop.create_task(_value("inner", 0.005))

        async def shielded():
            return await asyncio.shield(inner)

        outer = loop.create_task(shielded())
        await asyncio.sleep(0)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert not inner.cancelled()
        return await inner

    assert run(loop, main()) == "inner"


def test_shield_inner_cancelled(loop):
    async def main():
        inner = loop.create_task(asyncio.sleep(3600))
        outer = asyncio.shield(inner)
        await asyncio.sleep(0)
        inner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer

    run(loop, main())


def test_ensure_future_and_run_coroutine_threadsafe(loop, task_cls):
    import threading

    async def main():
        t = asyncio.ensure_future(_value(1))
        assert type(t) is task_cls
        res = []
        th = threading.Thread(target=lambda: res.append(
            asyncio.run_coroutine_threadsafe(_value(7), loop).result(5)))
        th.start()
        await asyncio.sleep(0.01)
        while th.is_alive():
            await asyncio.sleep(0.001)
        th.join()
        return await t, res

    assert run(loop, main()) == (1, [7])


def test_wrap_future_and_to_thread(loop):
    async def main():
        fut = loop.run_in_executor(None, lambda: 5)
        assert asyncio.isfuture(fut)
        r1 = await fut
        r2 = await asyncio.to_thread(lambda: 6)
        return r1, r2

    assert run(loop, main()) == (5, 6)
    loop.run_until_complete(loop.shutdown_default_executor())


# ---- Runner / run: Ctrl-C (in a subprocess) ----

_SIGINT_SCRIPT = r"""
import signal, sys
cancelled = []

async def main():
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    print("task", type(me).__module__, type(me).__name__, flush=True)
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.append(1)
        raise

try:
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    elif IMPL == "fastloop":
        import fastloop
        fastloop.run(main())
    else:
        asyncio.run(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
print("cancelled", cancelled, flush=True)
"""


def test_runner_ctrl_c_cancels_main_task(impl):
    proc = run_py(_SIGINT_SCRIPT, impl, timeout=20)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    expected_mod = "_asyncio" if impl == "asyncio" else "fastloop._core"
    assert lines[0].split()[0] == "task"
    assert lines[0].split()[2] == "Task", describe(proc)
    if impl == "fastloop":
        assert lines[0].split()[1].startswith("fastloop"), describe(proc)
    else:
        assert lines[0].split()[1] == expected_mod, describe(proc)
    assert "KeyboardInterrupt" in lines, describe(proc)
    assert lines[-1] == "cancelled [1]", describe(proc)


@pytest.mark.skipif(not PY311, reason="asyncio.Runner is 3.11+")
def test_runner_second_ctrl_c_before_cancel_completes(impl):
    # A main task that swallows the cancellation: Runner returns its result
    # and raises no KeyboardInterrupt (it only re-raises one for a task that
    # ended cancelled).
    code = r"""
import signal
async def main():
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("first cancel", asyncio.current_task().cancelling(), flush=True)
    return "finished"

try:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        print(runner.run(main()), flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""
    proc = run_py(code, impl, timeout=20)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == ["first cancel 1", "finished"], describe(proc)
