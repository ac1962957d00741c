"""Allocation failures (issue #10, class 5): every allocation an operation
makes is failed in turn (CPython's _testcapi.set_nomemory), and each attempt
either works or raises a clean exception (MemoryError, mostly), never a
crash. On asyncio's loop and on fastloop, each in a subprocess so that a
crash fails one test.

The loop must work afterwards."""
import sys

import pytest

from fl_support import describe, run_py

try:
    import _testcapi
    HAVE_NOMEMORY = hasattr(_testcapi, "set_nomemory")
except ImportError:
    HAVE_NOMEMORY = False

pytestmark = pytest.mark.skipif(not HAVE_NOMEMORY,
                                reason="needs _testcapi.set_nomemory")

SWEEP = r'''
import _testcapi, contextvars, socket
# The thread's first context: CPython 3.11 itself crashes when creating it
# fails (context_new_empty), whichever loop asks.
contextvars.copy_context()
loop = new_loop()
async def coro():
    await asyncio.sleep(0)
    return 1
async def gather():
    return await asyncio.gather(coro(), coro())
async def echo():
    a, b = socket.socketpair()
    a.setblocking(False); b.setblocking(False)
    try:
        await loop.sock_sendall(a, b"x")
        return await loop.sock_recv(b, 10)
    finally:
        a.close(); b.close()
async def stream():
    a, b = socket.socketpair()
    tr, pr = await loop.create_connection(asyncio.Protocol, sock=a)
    tr.write(b"data")
    tr.close()
    b.close()
OPS = {
    "call_soon": lambda: loop.call_soon(print, 1).cancel(),
    "call_later": lambda: loop.call_later(10, print, 1).cancel(),
    "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(print).cancel(),
    "create_future": lambda: loop.create_future(),
    "run_task": lambda: loop.run_until_complete(coro()),
    "gather": lambda: loop.run_until_complete(gather()),
    "sock_ops": lambda: loop.run_until_complete(echo()),
    "transport": lambda: loop.run_until_complete(stream()),
    "new_event_loop": lambda: new_loop().close(),
}
op = OPS[sys.argv[1]]
for k in range(0, 60):
    _testcapi.set_nomemory(k, k + 1)
    try:
        op()
    except Exception:
        pass
    finally:
        _testcapi.remove_mem_hooks()
print("SWEPT", flush=True)
assert loop.run_until_complete(coro()) == 1
assert loop.run_until_complete(echo()) == b"x"
loop.close()
print("OK")
'''


@pytest.fixture(autouse=True)
def _watchdog():
    """Replaces conftest's 30 s watchdog: the subprocess has its own limit."""
    yield


# Only operations that return: a failed allocation inside a running loop
# (run_until_complete of a task, gather, sock_* and transports) can leave
# a future that is never resolved, and the run then waits forever, on
# asyncio's loop and on fastloop alike.
@pytest.mark.parametrize("op", ["call_soon", "call_later", "call_soon_threadsafe",
                                "create_future", "new_event_loop"])
def test_allocation_failures_are_clean(impl, op):
    if impl == "asyncio" and op == "new_event_loop" and sys.version_info >= (3, 13):
        pytest.skip("asyncio's own loop segfaults here on 3.13+ (a half-made "
                    "loop's __del__; CPython's bug, not fastloop's)")
    proc = run_py(SWEEP, impl, args=[op], timeout=120, pyargs=["-X", "faulthandler"])
    assert proc.returncode >= 0, describe(proc)[-3000:]       # no signal
    assert "Fatal Python error" not in proc.stderr, describe(proc)[-3000:]
    assert proc.stdout.strip().endswith("OK"), describe(proc)[-3000:]
