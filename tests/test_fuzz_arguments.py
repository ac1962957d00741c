"""Every public method of the loop, Future, Task, Handle, TimerHandle, the
stream and datagram transports and the Server, called with a spread of wrong
arguments: each may raise, none may crash or hang the process. Runs in a
subprocess, on fastloop only: asyncio's own loop takes call_at(<a function>,
...) and then fails on its own corrupted timer heap, so this script cannot
run to its end there (what fastloop raises for each call is compared with
asyncio by the behaviour tests)."""
import pytest

from fl_support import describe, run_py

FUZZ = r'''
import inspect, socket, warnings
warnings.simplefilter("ignore")
ARGS = [(), (None,), (1,), ("x",), (-1,), (object(),), (None, None), (1, 2, 3), (print,), (print, 1), (10**30,), (b"x",), (float("nan"), print)]
SKIP = {"run_forever", "run_until_complete", "close", "stop", "_run", "_close_core", "set_event_loop"}
loop = new_loop()
asyncio.set_event_loop(loop)
def poke(obj, label):
    for name in sorted(dir(obj)):
        if name in SKIP or name.startswith("_"):
            continue
        try:
            attr = getattr(obj, name)
        except Exception:
            continue
        if not callable(attr):
            continue
        for args in ARGS:
            print(label, name, args, flush=True)
            try:
                r = attr(*args)
                if inspect.isawaitable(r):
                    try:
                        loop.run_until_complete(asyncio.wait_for(asyncio.ensure_future(r), 0.05))
                    except BaseException:
                        pass
            except BaseException:
                pass
poke(loop, "loop")
fut = loop.create_future(); poke(fut, "future")
async def c(): await asyncio.sleep(0)
t = loop.create_task(c()); poke(t, "task")
h = loop.call_soon(print); poke(h, "handle")
th = loop.call_later(100, print); poke(th, "timer")
loop = new_loop(); asyncio.set_event_loop(loop)
a, b = socket.socketpair(); a.setblocking(False)
async def mk():
    return await loop.create_connection(asyncio.Protocol, sock=a)
tr, pr = loop.run_until_complete(mk()); poke(tr, "transport")
loop.run_until_complete(asyncio.sleep(0.01))
u = loop.run_until_complete(loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)))[0]
poke(u, "udp")
loop.run_until_complete(asyncio.sleep(0.01))
srv = loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
poke(srv, "server")
loop.run_until_complete(asyncio.sleep(0.01))
print("DONE")
'''


def test_wrong_arguments_never_crash():
    proc = run_py(FUZZ, "fastloop", timeout=120)
    last = [ln for ln in proc.stdout.splitlines()][-1:]
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("DONE"), (
        f"died after {last}: {describe(proc)[-2000:]}")
