"""call_soon_threadsafe, loops in threads, run_coroutine_threadsafe."""
import asyncio
import threading
import time

import pytest

from fl_support import run


def _later_in_thread(delay, fn, *args):
    def target():
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=target)
    t.start()
    return t


def test_call_soon_threadsafe_wakes_idle_loop(loop):
    # Nothing is scheduled: the loop blocks in its poll until woken.
    t = _later_in_thread(0.1, loop.call_soon_threadsafe, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    elapsed = time.monotonic() - t0
    t.join()
    assert 0.05 <= elapsed < 1.0, elapsed


def test_call_soon_threadsafe_wakes_loop_with_far_timer(loop):
    loop.call_later(30, print)
    t = _later_in_thread(0.1, loop.call_soon_threadsafe, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    t.join()
    assert time.monotonic() - t0 < 1.0


def test_call_soon_threadsafe_args_and_context(loop):
    import contextvars
    var = contextvars.ContextVar("v", default="d")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx")
    seen = []

    def cb(a, b):
        seen.append((a, b, var.get(), threading.get_ident()))
        loop.stop()

    t = _later_in_thread(0.02, lambda: loop.call_soon_threadsafe(
        cb, 1, 2, context=ctx))
    loop.run_forever()
    t.join()
    assert seen == [(1, 2, "ctx", threading.get_ident())]


def test_call_soon_threadsafe_returns_cancellable_handle(loop):
    calls = []
    h = loop.call_soon_threadsafe(calls.append, 1)
    h.cancel()
    assert h.cancelled()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == []


def test_call_soon_threadsafe_many_threads(loop):
    n_threads, n_calls = 4, 2000
    got = {i: [] for i in range(n_threads)}
    done = []
    barrier = threading.Barrier(n_threads)

    def producer(i):
        barrier.wait()
        for j in range(n_calls):
            loop.call_soon_threadsafe(got[i].append, j)
        loop.call_soon_threadsafe(done.append, i)

    def check():
        if len(done) == n_threads:
            loop.stop()
        else:
            loop.call_later(0.005, check)

    threads = [threading.Thread(target=producer, args=(i,))
               for i in range(n_threads)]
    for t in threads:
        t.start()
    loop.call_soon(check)
    loop.run_forever()
    for t in threads:
        t.join()
    for i in range(n_threads):
        assert got[i] == list(range(n_calls))   # per-thread FIFO


def test_call_soon_threadsafe_before_run(loop):
    calls = []
    t = threading.Thread(target=loop.call_soon_threadsafe,
                         args=(calls.append, "x"))
    t.start()
    t.join()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["x"]


def test_call_soon_threadsafe_closed_loop_from_thread(loop):
    loop.close()
    errors = []

    def target():
        try:
            loop.call_soon_threadsafe(print)
        except RuntimeError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert errors == ["Event loop is closed"]


def test_loop_runs_in_non_main_thread(loop_factory):
    result = {}

    def target():
        lp = loop_factory()
        try:
            async def main():
                await asyncio.sleep(0.01)
                return (asyncio.get_running_loop() is lp,
                        threading.current_thread() is not threading.main_thread())
            result["r"] = lp.run_until_complete(main())
        except BaseException as exc:     # report, do not lose it in the thread
            result["exc"] = exc
        finally:
            lp.close()

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert result == {"r": (True, True)}


def test_two_loops_in_two_threads(loop_factory):
    results = []

    def target(i):
        lp = loop_factory()
        try:
            results.append(lp.run_until_complete(asyncio.sleep(0.02, i)))
        finally:
            lp.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, 1, 2]


def test_run_coroutine_threadsafe(loop):
    out = {}

    async def work(x):
        await asyncio.sleep(0.01)
        return x + 1

    def target():
        fut = asyncio.run_coroutine_threadsafe(work(41), loop)
        out["r"] = fut.result(5)
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=target)
    t.start()
    loop.run_forever()
    t.join()
    assert out == {"r": 42}


def test_loop_stopped_from_other_thread_while_awaiting(loop):
    async def main():
        fut = loop.create_future()
        threading.Timer(0.05, loop.call_soon_threadsafe,
                        args=(fut.set_result, "woken")).start()
        return await fut

    t0 = time.monotonic()
    assert run(loop, main()) == "woken"
    assert time.monotonic() - t0 < 1.0


def test_call_soon_from_thread_without_debug_does_not_raise(loop):
    # asyncio checks the thread only in debug mode; without it call_soon from
    # another thread is accepted (it is just not guaranteed to wake the loop).
    errors = []
    calls = []

    def target():
        try:
            loop.call_soon(calls.append, "x")
        except BaseException as exc:
            errors.append(exc)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=target).start())
    loop.run_forever()
    if not calls:
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert errors == []
    assert calls == ["x"]


def test_threadsafe_calls_racing_close(impl):
    # Threads keep calling call_soon_threadsafe while the main thread runs
    # and then closes the loop: each call either succeeds or raises
    # RuntimeError('Event loop is closed'); the process never crashes.
    from fl_support import describe, run_py
    proc = run_py("""
        import threading, time
        for attempt in range(20):
            loop = new_loop()
            stop = threading.Event()
            bad = []
            def hammer():
                while not stop.is_set():
                    try:
                        loop.call_soon_threadsafe(lambda: None)
                    except RuntimeError as exc:
                        if str(exc) != "Event loop is closed":
                            bad.append(repr(exc))
                        return
            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for t in threads:
                t.start()
            loop.call_later(0.005, loop.stop)
            loop.run_forever()
            loop.close()
            time.sleep(0.002)
            stop.set()
            for t in threads:
                t.join()
            assert not bad, bad
        print("survived")
    """, impl, timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "survived"
