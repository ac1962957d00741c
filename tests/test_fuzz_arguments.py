"""Every public type of fastloop, in every state a user can put it in, gets
every method with a spread of plausible and wrong arguments: each call may
raise, none may crash or hang the process (issue #10, class 2).

For each type (every type `fastloop._core` exposes, fastloop.Loop, the
future iterator, the sock_* operation and asyncio's Server as fastloop's
loop makes it) the objects are made:
- with `__new__` and no `__init__` (or, where `__new__` does the work, with
  `__new__` and valid arguments, `__init__` never called);
- the ordinary way (the loop's API, or the constructor);
- re-initialised with `__init__` and valid arguments, and with bad ones;
- in the other states the type has (done, cancelled, waiting, closed...).
Each object then gets every method (public and private) called with each
argument set, `await` where it is awaitable, repr(), every attribute read,
every C-level attribute written and deleted, copy/pickle, `gc.collect()`;
the loop runs in between so that queued callbacks and task steps run too.

One subprocess per type, on fastloop only (asyncio's loop takes
call_at(<a function>, ...) and then fails on its own corrupted timer heap,
and asyncio's own C Task crashes on some uninitialized uses: see
test_uninitialized.py). A crash or a hang fails the test of that type and
names the variant, method and arguments of the last call.
"""
import subprocess
import sys

import pytest

from fl_support import describe, run_py

FUZZ = r'''
import asyncio, copy, faulthandler, gc, inspect, os, pickle, socket, subprocess
import sys, threading, warnings
warnings.simplefilter("ignore")
import fastloop
from fastloop import _core
faulthandler.enable()

TYPE = sys.argv[1]
ARGS = [(), (None,), (1,), ("x",), (-1,), (object(),), (None, None),
        (1, 2, 3), (print,), (print, 1), (10**30,), (b"x",),
        (float("nan"), print), (ValueError,), (ValueError("v"),)]
KWARGS = [((print,), {"context": 1}), ((), {"msg": "m"}), ((), {"limit": 1}),
          ((), {"x": 1})]
# Loop methods that would block this process for good (run_forever and its
# core _run), leave the loop marked running in this thread (which stops the
# helper loop from running), or end what is being fuzzed (close, stop: the
# "closed" variant covers a closed loop).
LOOP_SKIP = {"run_forever", "_run", "_run_forever_setup", "close", "stop",
             "_close_core"}

# Methods that end the object's live state run last, so that the others
# meet a live object too (the closed/cancelled/done variants cover the rest).
ENDING = {"abort", "close", "_force_close", "_fatal_error", "write_eof",
          "_call_connection_lost", "cancel", "set_result", "set_exception",
          "__init__", "throw", "send", "__next__"}

def skipped(obj, name):
    return isinstance(obj, _core.LoopCore) and name in LOOP_SKIP
VALUES = [None, 1, "x", object(), True]

helper = fastloop.new_event_loop()    # runs what the fuzzed objects return
asyncio.set_event_loop(helper)
helper.set_exception_handler(lambda lp, ctx: None)
current = ["", ""]

def log(*what):
    print("CALL", *current, *what, flush=True)

def spin(loop=None, n=3):
    lp = loop or helper
    for _ in range(n):
        try:
            lp.run_until_complete(asyncio.sleep(0))
        except BaseException:
            pass

def drive(r, loop=None):
    """Runs an awaitable for a few iterations, then cancels it. Never waits
    for it: a task given a broken context (as a fuzzed __init__ may) never
    runs again, so waiting for its cancellation (wait_for) would hang on
    asyncio's loop as on fastloop."""
    lp = loop if isinstance(loop, fastloop.Loop) else helper
    try:
        if not inspect.isawaitable(r):
            return
        fut = asyncio.ensure_future(r, loop=lp)
    except BaseException:
        return
    spin(lp, 3)
    try:
        # (a fuzzed task factory may have made anything at all)
        if not fut.done():
            fut.cancel()
            spin(lp, 2)
        if fut.done() and not fut.cancelled():
            fut.exception()
    except BaseException:
        pass

async def await_it(obj):
    return await obj

def call(label, fn, loop=None):
    log(label)
    try:
        r = fn()
    except BaseException:
        return
    drive(r, loop)

def c_attributes(obj):
    """Attributes whose get/set/delete is C code: getset and member
    descriptors of the fastloop types in the MRO."""
    names = set()
    for klass in type(obj).__mro__:
        if klass.__module__ not in ("fastloop", "fastloop._core"):
            continue
        for name, d in vars(klass).items():
            if type(d).__name__ in ("getset_descriptor", "member_descriptor"):
                names.add(name)
    return sorted(names)

def poke(obj, loop=None):
    lp = loop if isinstance(loop, fastloop.Loop) else helper
    call("repr", lambda: repr(obj))
    call("str", lambda: str(obj))
    call("hash", lambda: hash(obj))
    call("await", lambda: await_it(obj), loop)
    for name in sorted(dir(obj)):
        call("getattr " + name, lambda: getattr(obj, name))
    for name in c_attributes(obj):
        for v in VALUES:
            call(f"setattr {name} {v!r}", lambda: setattr(obj, name, v))
        call("delattr " + name, lambda: delattr(obj, name))
    for name in sorted(dir(obj), key=lambda n: (n in ENDING, n)):
        if skipped(obj, name) or (name.startswith("__") and name not in (
                "__await__", "__iter__", "__next__", "__reduce__",
                "__reduce_ex__", "__sizeof__", "__getstate__", "__init__",
                "__class_getitem__")):
            continue
        try:
            attr = getattr(obj, name)
        except BaseException:
            continue
        if not callable(attr):
            continue
        for args in ARGS:
            call(f"{name}{args!r}", lambda: attr(*args), loop)
        for args, kwargs in KWARGS:
            call(f"{name}{args!r} {kwargs!r}", lambda: attr(*args, **kwargs), loop)
        log("gc.collect after " + name)
        gc.collect()
        spin(lp, 1)
    for what, fn in [("copy.copy", copy.copy), ("copy.deepcopy", copy.deepcopy),
                     ("pickle", pickle.dumps)]:
        call(what, lambda: poke_result(fn(obj)))
    log("gc.collect")
    gc.collect()
    spin(lp)

def poke_result(r):
    """A copy made without __init__: poke it too, but only shallowly."""
    if r is None or isinstance(r, (bytes, str)):
        return
    for name in sorted(dir(r)):
        if name.startswith("__") or skipped(r, name):
            continue
        try:
            attr = getattr(r, name)
            if callable(attr):
                attr()
        except BaseException:
            pass
    repr_ok = False
    try:
        repr(r)
    except BaseException:
        pass

ONLY = os.environ.get("FUZZ_ONLY")     # debugging: one variant

def variant(label, make, loop=None):
    if ONLY and label != ONLY:
        return
    current[:] = [TYPE, label]
    log("make")
    try:
        obj = make()
    except BaseException as e:
        print("MADE", TYPE, label, "raised", type(e).__name__, flush=True)
        return
    print("MADE", TYPE, label, type(obj).__name__, flush=True)
    poke(obj, loop(obj) if callable(loop) else loop)
    del obj
    log("gc.collect at end")
    gc.collect()
    spin()

def in_thread(fn):
    """Calls fn in a thread that has no event loop (loop=None fails there)."""
    err = []
    def run():
        try:
            fn()
        except BaseException as e:
            err.append(e)
    th = threading.Thread(target=run)
    th.start(); th.join()
    if err:
        raise err[0]

def reinit(obj, *args, **kwargs):
    try:
        obj.__init__(*args, **kwargs)
    except BaseException:
        pass
    return obj

def reinit_all(obj, arg_sets):
    for args, kwargs in arg_sets:
        reinit(obj, *args, **kwargs)
    return obj

class BadStr:
    def __str__(self):
        raise ValueError("no str")

async def coro():
    await asyncio.sleep(0)
    return 1

def socketpair():
    a, b = socket.socketpair()
    a.setblocking(False); b.setblocking(False)
    keep.extend([a, b])
    return a, b

keep = []

def future_variants():
    F = fastloop.Future
    def done(f, how):
        getattr(f, how[0])(*how[1:])
        return f
    variant("__new__", lambda: F.__new__(F))
    variant("create_future", helper.create_future)
    variant("Future(loop=)", lambda: F(loop=helper))
    variant("reinit", lambda: reinit(F(loop=helper), loop=helper))
    variant("reinit with callbacks, bad args", lambda: reinit_all(
        done(helper.create_future(), ("add_done_callback", print)),
        [((), {"loop": 1}), ((1,), {}), ((), {"loop": None, "x": 1})]))
    variant("init failing in a thread", lambda: in_thread(lambda: None) or
            reinit_in_thread(helper.create_future()))
    variant("result", lambda: done(helper.create_future(), ("set_result", 1)))
    variant("exception", lambda: done(helper.create_future(),
                                      ("set_exception", ValueError)))
    variant("cancelled", lambda: done(helper.create_future(), ("cancel", "m")))
    class Sub(F):
        pass
    variant("subclass __new__", lambda: Sub.__new__(Sub))
    variant("subclass", lambda: Sub(loop=helper))

def reinit_in_thread(obj, *args):
    try:
        in_thread(lambda: obj.__init__(*args))
    except BaseException:
        pass
    return obj

def task_variants():
    T = fastloop.Task
    def waiting():
        fut = helper.create_future()
        async def waits():
            return await fut
        t = helper.create_task(waits())
        spin()
        keep.append(fut)
        return t
    def done_task():
        t = helper.create_task(coro())
        spin()
        return t
    variant("__new__", lambda: T.__new__(T))
    variant("create_task", lambda: helper.create_task(coro()))
    variant("Task(coro, loop=)", lambda: T(coro(), loop=helper))
    variant("reinit", lambda: reinit(helper.create_task(coro()), coro(), loop=helper))
    variant("reinit bad coro", lambda: reinit(helper.create_task(coro()), 1))
    variant("reinit bad loop", lambda: reinit(helper.create_task(coro()), coro(), loop=1))
    variant("reinit bad name", lambda: reinit(helper.create_task(coro()), coro(),
                                               name=BadStr()))
    variant("reinit bad context", lambda: reinit(helper.create_task(coro()), coro(),
                                                  context=1))
    variant("reinit without a loop", lambda: reinit_in_thread(
        helper.create_task(coro()), coro()))
    variant("waiting", waiting)
    variant("waiting, reinit bad", lambda: reinit_all(waiting(), [
        ((1,), {}), ((coro(),), {"loop": 1})]))
    variant("waiting, reinit without a loop", lambda: reinit_in_thread(
        waiting(), coro()))
    variant("done", done_task)
    variant("done, reinit", lambda: reinit(done_task(), coro(), loop=helper))
    variant("__new__, init bad coro", lambda: reinit(T.__new__(T), 1, loop=helper))
    class Sub(T):
        pass
    variant("subclass", lambda: Sub(coro(), loop=helper))

def iter_variants():
    def it(f):
        keep.append(f)
        return f.__await__()
    variant("FutureIter.__new__", lambda: _core.FutureIter.__new__(_core.FutureIter))
    variant("of a pending future", lambda: it(helper.create_future()))
    def done(how):
        f = helper.create_future()
        getattr(f, how[0])(*how[1:])
        return it(f)
    variant("of a done future", lambda: done(("set_result", 1)))
    variant("of a failed future", lambda: done(("set_exception", ValueError)))
    variant("of a cancelled future", lambda: done(("cancel",)))
    variant("of a pending task", lambda: it(helper.create_task(coro())))
    def reinit_after(f):
        i = f.__await__()
        next(i, None)
        reinit_in_thread(f)
        keep.append(f)
        return i
    variant("of a future re-initialized without a loop",
            lambda: reinit_after(helper.create_future()))

def handle_variants():
    H = fastloop.Handle
    variant("__new__", lambda: H.__new__(H))
    variant("__new__ with arguments", lambda: H.__new__(H, print, (1,), helper))
    variant("Handle()", lambda: H(print, (), helper))
    variant("Handle(context=1)", lambda: H(print, (), helper, 1))
    variant("call_soon", lambda: helper.call_soon(print, 1))
    variant("reinit", lambda: reinit_all(helper.call_soon(print), [
        ((print, (), helper), {}), ((1,), {}), ((), {})]))
    variant("cancelled", lambda: (lambda h: (h.cancel(), h)[1])(helper.call_soon(print)))

def timer_variants():
    TH = fastloop.TimerHandle
    variant("__new__", lambda: TH.__new__(TH))
    variant("call_later", lambda: helper.call_later(100, print, 1))
    variant("call_at", lambda: helper.call_at(helper.time() + 100, print))
    variant("reinit", lambda: reinit_all(helper.call_later(100, print), [
        ((1.0, print, (), helper), {}), ((1,), {})]))
    variant("cancelled", lambda: (lambda h: (h.cancel(), h)[1])(
        helper.call_later(100, print)))
    variant("due", lambda: (lambda h: (spin(), h)[1])(helper.call_later(0, print)))

def threadsafe_handle_variants():
    TSH = type(helper.call_soon_threadsafe(print))
    variant("__new__", lambda: TSH.__new__(TSH))
    variant("call_soon_threadsafe", lambda: helper.call_soon_threadsafe(print, 1))
    variant("reinit", lambda: reinit_all(helper.call_soon_threadsafe(print), [
        ((print, (), helper), {}), ((1,), {}), ((), {})]))
    variant("cancelled", lambda: (lambda h: (h.cancel(), h)[1])(
        helper.call_soon_threadsafe(print)))
    variant("cancelled from a thread", lambda: (lambda h: (
        __import__("threading").Thread(target=h.cancel).start(), h)[1])(
        helper.call_soon_threadsafe(print)))

def loop_variants():
    L = fastloop.Loop
    def closed():
        lp = fastloop.new_event_loop()
        lp.close()
        return lp
    as_loop = lambda obj: obj
    variant("Loop.__new__", lambda: L.__new__(L), as_loop)
    variant("new_event_loop", fastloop.new_event_loop, as_loop)
    variant("reinit", lambda: reinit(fastloop.new_event_loop()), as_loop)
    variant("reinit bad", lambda: reinit(fastloop.new_event_loop(), 1), as_loop)
    variant("closed", closed, as_loop)

def loopcore_variants():
    LC = _core.LoopCore
    variant("LoopCore.__new__", lambda: LC.__new__(LC))
    variant("LoopCore()", LC)
    variant("reinit", lambda: reinit_all(LC(), [((), {}), ((1,), {})]))

def stream_variants():
    ST = fastloop.StreamTransport if hasattr(fastloop, "StreamTransport") else _core.StreamTransport
    def connected():
        a, b = socketpair()
        tr, _ = helper.run_until_complete(
            helper.create_connection(asyncio.Protocol, sock=a))
        return tr
    variant("__new__", lambda: ST.__new__(ST))
    variant("__new__ with arguments", lambda: ST.__new__(
        ST, helper, socketpair()[0], asyncio.Protocol()))
    variant("create_connection", connected)
    variant("reinit", lambda: reinit_all(connected(), [
        ((helper, socketpair()[0], asyncio.Protocol()), {}), ((1,), {})]))
    variant("closed", lambda: (lambda t: (t.close(), spin(), t)[2])(connected()))
    variant("aborted", lambda: (lambda t: (t.abort(), spin(), t)[2])(connected()))
    def write_pipe():
        r, w = os.pipe()
        keep.append(os.fdopen(r, "rb"))
        tr, _ = helper.run_until_complete(helper.connect_write_pipe(
            asyncio.Protocol, os.fdopen(w, "wb")))
        return tr
    variant("write pipe", write_pipe)

def read_pipe_variants():
    RP = _core.ReadPipeTransport
    def pipe_file():
        r, w = os.pipe()
        keep.append(os.fdopen(w, "wb"))
        return os.fdopen(r, "rb")
    def connected():
        tr, _ = helper.run_until_complete(helper.connect_read_pipe(
            asyncio.Protocol, pipe_file()))
        return tr
    variant("__new__", lambda: RP.__new__(RP))
    variant("__new__ with arguments", lambda: RP.__new__(
        RP, helper, pipe_file(), asyncio.Protocol(), pipe=1))
    variant("connect_read_pipe", connected)
    variant("reinit", lambda: reinit_all(connected(), [((1,), {}), ((), {})]))
    variant("closed", lambda: (lambda t: (t.close(), spin(), t)[2])(connected()))

def datagram_variants():
    DT = _core.DatagramTransport
    def endpoint():
        tr, _ = helper.run_until_complete(helper.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)))
        return tr
    def udp_sock():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        keep.append(s)
        return s
    variant("__new__", lambda: DT.__new__(DT))
    variant("__new__ with arguments", lambda: DT.__new__(
        DT, helper, udp_sock(), asyncio.DatagramProtocol()))
    variant("create_datagram_endpoint", endpoint)
    variant("reinit", lambda: reinit_all(endpoint(), [
        ((helper, udp_sock(), asyncio.DatagramProtocol()), {}), ((1,), {})]))
    variant("closed", lambda: (lambda t: (t.close(), spin(), t)[2])(endpoint()))

def listener_variants():
    LS = _core.Listener
    def listening():
        s = socket.socket()
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        s.listen()
        keep.append(s)
        return s
    variant("__new__", lambda: LS.__new__(LS))
    variant("__new__ with arguments", lambda: LS.__new__(
        LS, helper, listening(), asyncio.Protocol))
    variant("Listener()", lambda: LS(helper, listening(), asyncio.Protocol))
    variant("reinit", lambda: reinit_all(LS(helper, listening(), asyncio.Protocol),
                                         [((1,), {}), ((), {})]))
    def server_listener():
        srv = helper.run_until_complete(helper.create_server(
            asyncio.Protocol, "127.0.0.1", 0))
        keep.append(srv)
        return next(iter(helper._fl_listeners.values()))
    variant("of create_server", server_listener)

def child_watcher_variants():
    CW = _core.ChildWatcher
    def child():
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
        keep.append(p)
        return os.pidfd_open(p.pid), p.pid
    variant("__new__", lambda: CW.__new__(CW))
    variant("ChildWatcher()", lambda: CW(helper, *child(), print))
    variant("reinit", lambda: reinit_all(CW(helper, *child(), print),
                                         [((1,), {}), ((), {})]))
    def exited():
        p = subprocess.Popen([sys.executable, "-c", "pass"])
        keep.append(p)
        w = CW(helper, os.pidfd_open(p.pid), p.pid, print)
        p.wait()
        spin(n=10)
        return w
    variant("of an exited child", exited)

def sock_op_variants():
    def op(make):
        a, b = socketpair()
        return make(a, b)
    variant("sock_recv", lambda: op(lambda a, b: helper.sock_recv(a, 10)))
    variant("sock_recv_into", lambda: op(lambda a, b: helper.sock_recv_into(a, bytearray(4))))
    variant("sock_sendall", lambda: op(lambda a, b: helper.sock_sendall(a, b"x" * 10**6)))
    variant("sock_recv, socket closed", lambda: op(
        lambda a, b: (lambda r: (a.close(), r)[1])(helper.sock_recv(a, 10))))
    def accept():
        s = socket.socket()
        s.setblocking(False); s.bind(("127.0.0.1", 0)); s.listen()
        keep.append(s)
        return helper.sock_accept(s)
    variant("sock_accept", accept)

def server_variants():
    def server():
        return helper.run_until_complete(helper.create_server(
            asyncio.Protocol, "127.0.0.1", 0))
    variant("create_server", server)
    variant("closed", lambda: (lambda s: (s.close(), spin(), s)[2])(server()))
    variant("__new__", lambda: type(server()).__new__(type(server())))

def tls_connection():
    """A live TLS connection of the helper loop: the client's app transport."""
    from test.test_asyncio import utils as tu
    srv = helper.run_until_complete(helper.create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl=tu.simple_server_sslcontext()))
    keep.append(srv)
    port = srv.sockets[0].getsockname()[1]
    tr, _ = helper.run_until_complete(helper.create_connection(
        asyncio.Protocol, "127.0.0.1", port, ssl=tu.simple_client_sslcontext(),
        server_hostname=""))
    keep.append(tr)
    return tr

def tls_ended(how):
    tr = tls_connection()
    getattr(tr, how)()
    spin(n=10)
    return tr

def tls_protocol_variants():
    from test.test_asyncio import utils as tu
    from fastloop import _tls
    TP, SP = _core.TLSProtocol, _tls.SSLProtocol
    variant("__new__", lambda: TP.__new__(TP))
    variant("SSLProtocol.__new__", lambda: SP.__new__(SP))
    variant("SSLProtocol() never connected", lambda: SP(
        helper, asyncio.Protocol(), tu.simple_client_sslcontext(), None,
        server_hostname=""))
    variant("SSLProtocol() buffered, never connected", lambda: SP(
        helper, asyncio.BufferedProtocol(), tu.simple_client_sslcontext(),
        None, server_hostname=""))
    variant("of a connection", lambda: tls_connection()._ssl_protocol)
    variant("closed", lambda: tls_ended("close")._ssl_protocol)
    variant("aborted", lambda: tls_ended("abort")._ssl_protocol)

def tls_transport_variants():
    from fastloop import _tls
    TT, ST = _core.TLSTransport, _tls.SSLTransport
    variant("__new__", lambda: TT.__new__(TT))
    variant("SSLTransport.__new__", lambda: ST.__new__(ST))
    variant("of a connection", tls_connection)
    variant("reinit", lambda: reinit_all(tls_connection(), [
        ((helper, None), {}), ((1,), {})]))
    variant("closed", lambda: tls_ended("close"))
    variant("aborted", lambda: tls_ended("abort"))

VARIANTS = {
    "Future": future_variants, "Task": task_variants, "FutureIter": iter_variants,
    "Handle": handle_variants, "TimerHandle": timer_variants,
    "_ThreadSafeHandle": threadsafe_handle_variants, "Loop": loop_variants, "LoopCore": loopcore_variants,
    "StreamTransport": stream_variants, "ReadPipeTransport": read_pipe_variants,
    "DatagramTransport": datagram_variants, "Listener": listener_variants,
    "ChildWatcher": child_watcher_variants, "SockOperation": sock_op_variants,
    "Server": server_variants, "TLSProtocol": tls_protocol_variants,
    "TLSTransport": tls_transport_variants,
}
VARIANTS[TYPE]()
current[:] = [TYPE, "end"]
log("close the helper loop")
for obj in keep:
    try:
        obj.close()
    except BaseException:
        pass
    try:
        obj.kill()
    except BaseException:
        pass
spin()
helper.close()
gc.collect()
print("DONE", flush=True)
'''

# Every type fastloop._core exposes, plus the objects that are only ever
# made by the loop (SockOperation, the future iterator) and asyncio's Server
# as fastloop's loop drives it.
TYPES = ["Loop", "LoopCore", "Handle", "TimerHandle", "Future", "Task",
         "FutureIter", "StreamTransport", "ReadPipeTransport",
         "DatagramTransport", "Listener", "ChildWatcher", "SockOperation",
         "Server", "TLSProtocol", "TLSTransport"]
if sys.version_info >= (3, 14):
    TYPES.append("_ThreadSafeHandle")     # call_soon_threadsafe()'s, 3.14+

# Crashes the fuzz finds in files this branch does not own: each is fixed on
# the branch that owns the file, and marked here so that the test starts to
# fail (strict) the moment the fix arrives and this list is out of date.
KNOWN_CRASHES = {}


@pytest.fixture(autouse=True)
def _watchdog():
    """Replaces conftest's 30 s watchdog: the subprocess has its own limit."""
    yield


def test_every_core_type_is_fuzzed():
    import fastloop._core as core
    exposed = {name for name in dir(core) if isinstance(getattr(core, name), type)}
    assert exposed <= set(TYPES), f"not fuzzed: {sorted(exposed - set(TYPES))}"


@pytest.mark.parametrize("type_name", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=KNOWN_CRASHES[t]))
    if t in KNOWN_CRASHES else t for t in TYPES])
def test_no_crash(type_name):
    try:
        proc = run_py(FUZZ, "fastloop", args=[type_name], timeout=240,
                      pyargs=["-X", "faulthandler"])
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        calls = [ln for ln in out.splitlines() if ln.startswith("CALL ")]
        pytest.fail(f"{type_name}: hung after {calls[-1:]}")
    calls = [ln for ln in proc.stdout.splitlines() if ln.startswith("CALL ")]
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("DONE"), (
        f"{type_name}: died (rc={proc.returncode}) after {calls[-1:]}\n"
        f"{describe(proc)[-3000:]}")
