"""Running out of file descriptors (issue #10, class 5): connect, accept,
pipes and subprocesses, on asyncio's loop and on fastloop.

Each scenario runs in a child interpreter whose RLIMIT_NOFILE is lowered,
fills every free fd, then frees them one at a time, trying the operation
after each: every attempt either works or fails with a clean OSError, no fd
leaks, and the loop keeps working afterwards.
"""
import pytest

from fl_support import describe, run_py

PRELUDE = """
import errno, os, resource, socket, sys

hog = []

def exhaust():
    while True:
        try:
            hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
            return

def release(n=None):
    for _ in range(len(hog) if n is None else min(n, len(hog))):
        os.close(hog.pop())

def nfds():
    return len(os.listdir("/proc/self/fd"))

def lower_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, nfds() + 64), hard))

async def sweep(attempt, cleanup, max_free=16, first_fails=True):
    '''attempt() with 0, 1, 2, ... free fds: a result or a clean OSError.'''
    outcomes = []
    for free in range(max_free):
        exhaust()
        release(free)
        try:
            res = await asyncio.wait_for(attempt(), 10)
        except OSError as exc:
            assert exc.errno in (errno.EMFILE, errno.ENFILE), repr(exc)
            outcomes.append("EMFILE")
            res = None
        finally:
            release()
        if res is not None:
            outcomes.append("ok")
            await cleanup(res)
    assert outcomes[0] == "EMFILE" or not first_fails, outcomes
    assert outcomes[-1] == "ok", outcomes
    return outcomes
"""


def run_scenario(code, impl):
    proc = run_py(PRELUDE + code, impl, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout.split(), describe(proc)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_connect_out_of_fds(impl):
    code = """
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    addr = srv.sockets[0].getsockname()
    await asyncio.sleep(0.01)
    lower_limit()
    before = nfds()

    async def attempt():
        return await loop.create_connection(asyncio.Protocol, *addr)

    async def cleanup(res):
        res[0].close()
        await asyncio.sleep(0.01)

    await sweep(attempt, cleanup)

    async def attempt_sock():
        s = socket.socket()
        s.setblocking(False)
        try:
            await loop.sock_connect(s, addr)
        except BaseException:
            s.close()
            raise
        return s

    async def cleanup_sock(s):
        s.close()

    await sweep(attempt_sock, cleanup_sock)
    await asyncio.sleep(0.05)
    assert nfds() == before, (nfds(), before)
    tr, _ = await loop.create_connection(asyncio.Protocol, *addr)
    tr.close()
    srv.close()
    await srv.wait_closed()
    print("ok")

loop = new_loop()
loop.run_until_complete(main())
loop.close()
"""
    run_scenario(code, impl)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_accept_out_of_fds(impl):
    code = """
async def main():
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda l, c: errors.append(c))
    made = []

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            made.append(tr)

    srv = await loop.create_server(P, "127.0.0.1", 0)
    addr = srv.sockets[0].getsockname()
    await asyncio.sleep(0.01)
    lower_limit()
    clients = [socket.socket() for _ in range(3)]
    exhaust()
    for c in clients:
        c.setblocking(False)
        try:
            c.connect(addr)
        except BlockingIOError:
            pass
    await asyncio.sleep(0.2)
    assert not made
    assert any(c.get("message") == "socket.accept() out of system resource"
               and c["exception"].errno == errno.EMFILE for c in errors), errors
    release()
    for _ in range(300):        # accepting resumes after ACCEPT_RETRY_DELAY
        if len(made) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(made) == 3, made

    # sock_accept() at EMFILE: a clean error, and it accepts afterwards.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    ls.setblocking(False)
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(ls.getsockname())
    except BlockingIOError:
        pass
    await asyncio.sleep(0.01)
    exhaust()
    try:
        await loop.sock_accept(ls)
    except OSError as exc:
        assert exc.errno == errno.EMFILE
    else:
        raise AssertionError("accepted with no free fd")
    finally:
        release()
    conn, _ = await loop.sock_accept(ls)
    for s in [conn, c, ls] + clients:
        s.close()
    for tr in made:
        tr.close()
    srv.close()
    await srv.wait_closed()
    print("ok")

loop = new_loop()
loop.run_until_complete(main())
loop.close()
"""
    run_scenario(code, impl)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
@pytest.mark.parametrize("pipes", [True, False], ids=["pipes", "no-pipes"])
def test_subprocess_out_of_fds(impl, pipes):
    """Popen's own pipes, its exec-error pipe, the pidfd (fastloop then
    waits in a thread) and the pipe transports, each in turn short of an
    fd."""
    code = """
PIPES = %r
async def main():
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)
    lower_limit()
    before = nfds()
    kw = dict(stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
              stderr=asyncio.subprocess.PIPE) if PIPES else {}

    async def attempt():
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read() if %%r else '')" %% PIPES,
            **kw)

    async def cleanup(proc):
        if PIPES:
            out, err = await asyncio.wait_for(proc.communicate(b"data"), 20)
            assert out == b"data", (out, err)
        assert await asyncio.wait_for(proc.wait(), 20) == 0

    # (3.13's Popen spawns with no free fd at all when it needs no pipes:
    # posix_spawn has no error pipe; fastloop then waits in a thread.)
    outcomes = await sweep(attempt, cleanup, max_free=20, first_fails=PIPES)
    await asyncio.sleep(0.1)
    assert nfds() == before, (nfds(), before, outcomes)

    # connect_read_pipe on a pipe made with the last free fds
    exhaust()
    release(2)
    r, w = os.pipe()
    class P(asyncio.Protocol):
        def __init__(self):
            self.data = b""
            self.lost = loop.create_future()
        def data_received(self, data):
            self.data += data
        def connection_lost(self, exc):
            self.lost.set_result(exc)
    tr, pr = await loop.connect_read_pipe(P, os.fdopen(r, "rb", 0))
    os.write(w, b"piped")
    os.close(w)
    await asyncio.wait_for(pr.lost, 5)
    assert pr.data == b"piped"
    release()
    print("ok")

loop = new_loop()
loop.run_until_complete(main())
loop.close()
""" % pipes
    run_scenario(code, impl)
