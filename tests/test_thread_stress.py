"""Threads against loops that are created, run, stopped and closed.

Issue #10: C1 (call_soon_threadsafe racing close() in debug mode crashed)
and class 4 (a bounded stress test, in debug mode and out of it, that must
also be clean under AddressSanitizer: scripts/asan).
"""
import pytest

from fl_support import describe, run_py


def test_threadsafe_callback_check_closes_loop(loop):
    # Debug mode checks the callback (Python code) after the closed check:
    # here that code closes the loop. asyncio queues the handle on the
    # closed loop and returns it; fastloop refuses with the closed-loop
    # error. Either is fine; waking a closed loop is not.
    loop.set_debug(True)

    class Evil:
        def __call__(self):
            pass

        def __getattr__(self, name):
            if not loop.is_closed():
                loop.close()
            raise AttributeError(name)

    try:
        handle = loop.call_soon_threadsafe(Evil())
    except RuntimeError as exc:
        assert str(exc) == "Event loop is closed"
    else:
        handle.cancel()
    assert loop.is_closed()


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_callback_check_closes_loop(loop, method):
    # The same for the loop's own thread: nothing may be queued on, or woken
    # in, a loop closed by the callback check.
    loop.set_debug(True)

    class Evil:
        def __call__(self):
            pass

        def __getattr__(self, name):
            if not loop.is_closed():
                loop.close()
            raise AttributeError(name)

    args = {"call_soon": (), "call_later": (0.01,), "call_at": (loop.time(),)}[method]
    try:
        handle = getattr(loop, method)(*args, Evil())
    except RuntimeError as exc:
        assert str(exc) == "Event loop is closed"
    else:
        handle.cancel()
    assert loop.is_closed()


STRESS = """
import asyncio, sys, threading, time, warnings
warnings.simplefilter("ignore")       # never-awaited coroutines of refused calls
DEBUG = sys.argv[1] == "1"
DURATION = float(sys.argv[2])
N_THREADS = 4

current = [None]
stop_all = threading.Event()
bad = []
done = {"calls": 0, "coros": 0, "refused": 0}
lock = threading.Lock()

async def coro(x):
    await asyncio.sleep(0)
    return x * 2

def worker(i):
    n = 0
    while not stop_all.is_set():
        loop = current[0]
        if loop is None:
            time.sleep(0)
            continue
        n += 1
        try:
            if n % 3:
                loop.call_soon_threadsafe(lambda: None)
                with lock:
                    done["calls"] += 1
            else:
                fut = asyncio.run_coroutine_threadsafe(coro(n), loop)
                try:
                    r = fut.result(timeout=0.05)
                except Exception:
                    pass         # loop stopped or closed before it ran
                else:
                    if r != n * 2:
                        bad.append(("result", n, r))
                    with lock:
                        done["coros"] += 1
        except RuntimeError as exc:
            if str(exc) != "Event loop is closed":
                bad.append(repr(exc))
            with lock:
                done["refused"] += 1
        except BaseException as exc:
            bad.append(repr(exc))

threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
for t in threads:
    t.start()

deadline = time.monotonic() + DURATION
cycles = 0
try:
    while time.monotonic() < deadline:
        loop = new_loop()
        loop.set_debug(DEBUG)
        loop.slow_callback_duration = 10
        current[0] = loop
        for _ in range(3):
            # stopped by the loop itself, or from another thread
            if cycles % 2:
                loop.call_later(0.002, loop.stop)
            else:
                threading.Timer(0.002, loop.call_soon_threadsafe,
                                args=(loop.stop,)).start()
            loop.run_forever()
        if cycles % 4 == 0:
            current[0] = None    # sometimes closed unseen, sometimes seen
        loop.close()
        cycles += 1
finally:
    stop_all.set()
    for t in threads:
        t.join(10)
assert not any(t.is_alive() for t in threads), "a worker hung"
assert not bad, bad[:5]
assert cycles > 5, cycles
print("cycles", cycles, done)
"""


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_threads_against_loops_created_run_stopped_closed(impl, debug):
    proc = run_py(STRESS, impl, args=("1" if debug else "0", "2.0"),
                  timeout=25)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.startswith("cycles"), describe(proc)


def test_threadsafe_racing_close_debug(impl):
    # C1's reproduction: three threads post while the loop runs briefly and
    # closes, in debug mode, for a bounded time.
    proc = run_py("""
        import threading, time
        deadline = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < deadline:
            loop = new_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = 10
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
            loop.call_later(0.002, loop.stop)
            loop.run_forever()
            loop.close()
            stop.set()
            for t in threads:
                t.join()
            assert not bad, bad
            n += 1
        print("survived", n > 0)
    """, impl, timeout=25)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "survived True", describe(proc)
