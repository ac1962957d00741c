"""When the loop cannot watch an fd (issue #10, S2 and S3).

epoll_ctl() fails with ENOSPC at fs.epoll.max_user_watches (or ENOMEM).
asyncio's selector raises at once, from add_reader(); libev registers fds
only at its next poll, and then reports EV_ERROR to the watchers. Neither
may stall silently or block the loop.

The failure is injected with a small LD_PRELOAD library whose epoll_ctl()
refuses chosen fds (ADD and MOD) with ENOSPC; the child interpreter sets
which through ctypes. Both loops see it: asyncio's select.epoll calls the
same function.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from fl_support import PY312, describe, run_py

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int fl_shim_fail_fd = -1;       /* epoll_ctl refuses this fd */
int fl_shim_fail_pidfds = 0;    /* ... and, when set, every pidfd */

static int
is_pidfd(int fd)
{
    char path[64], buf[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    if (n < 0) {
        return 0;
    }
    buf[n] = 0;
    return strcmp(buf, "anon_inode:[pidfd]") == 0;
}

int
epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    static int (*real)(int, int, int, struct epoll_event *);
    if (real == NULL) {
        real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    }
    if (op != EPOLL_CTL_DEL
            && (fd == fl_shim_fail_fd || (fl_shim_fail_pidfds && is_pidfd(fd)))) {
        errno = ENOSPC;
        return -1;
    }
    return real(epfd, op, fd, ev);
}
"""

PRELUDE = """
import ctypes, errno, socket, time
_shim = ctypes.CDLL(None)
def fail_fd(fd):
    ctypes.c_int.in_dll(_shim, "fl_shim_fail_fd").value = fd
def fail_pidfds(on):
    ctypes.c_int.in_dll(_shim, "fl_shim_fail_pidfds").value = int(on)
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C compiler and Linux")
    d = tmp_path_factory.mktemp("shim")
    src = d / "shim.c"
    src.write_text(SHIM)
    lib = d / "libshim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src),
                    "-ldl"], check=True)
    # After ASan's runtime when the tests run under scripts/asan.
    preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), str(lib)]))
    return {"LD_PRELOAD": preload}


def run_shimmed(code, impl, shim):
    proc = run_py(PRELUDE + textwrap.dedent(code), impl, env=shim)
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)
    return proc


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_stream_transport_fd_not_watchable(impl, shim):
    """S3: a connection whose fd cannot be watched fails with the error
    (fastloop: connection_lost(OSError(ENOSPC))); asyncio's call_soon'd
    _add_reader raises into the exception handler. Never a silent stall."""
    code = """
        errors = []
        class P(asyncio.Protocol):
            def __init__(self):
                self.lost = asyncio.get_running_loop().create_future()
            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: errors.append(c))
            a, b = socket.socketpair()
            fail_fd(a.fileno())
            tr, pr = await loop.connect_accepted_socket(P, a)
            done, _ = await asyncio.wait([pr.lost], timeout=2)
            fail_fd(-1)
            excs = [c.get("exception") for c in errors]
            if done:
                excs.append(pr.lost.result())
            assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC
                       for e in excs), (excs, errors)
            if IMPL == "fastloop":
                assert done and pr.lost.result().errno == errno.ENOSPC
            tr.abort()
            b.close()
            await asyncio.sleep(0.01)
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_stream_write_watch_fails(impl, shim):
    """S3, the write side: a write that must wait for the fd to drain, on
    an fd that can no longer be watched (MOD refused)."""
    code = """
        errors = []
        class P(asyncio.Protocol):
            def __init__(self):
                self.lost = asyncio.get_running_loop().create_future()
            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: errors.append(c))
            a, b = socket.socketpair()
            tr, pr = await loop.connect_accepted_socket(P, a)
            await asyncio.sleep(0.01)
            fail_fd(a.fileno())
            try:
                tr.write(b"x" * (8 * 1024 * 1024))
            except OSError as exc:
                errors.append({"exception": exc})    # asyncio: at once
            done, _ = await asyncio.wait([pr.lost], timeout=2)
            fail_fd(-1)
            excs = [c.get("exception") for c in errors]
            if done:
                excs.append(pr.lost.result())
            assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC
                       for e in excs), (excs, errors)
            if IMPL == "fastloop":
                assert done and pr.lost.result().errno == errno.ENOSPC
            tr.abort()
            b.close()
            await asyncio.sleep(0.01)
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_datagram_transport_fd_not_watchable(impl, shim):
    code = """
        errors = []
        class P(asyncio.DatagramProtocol):
            def __init__(self):
                self.lost = asyncio.get_running_loop().create_future()
            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: errors.append(c))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            fail_fd(s.fileno())
            tr, pr = await loop.create_datagram_endpoint(P, sock=s)
            done, _ = await asyncio.wait([pr.lost], timeout=2)
            fail_fd(-1)
            excs = [c.get("exception") for c in errors]
            if done:
                excs.append(pr.lost.result())
            assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC
                       for e in excs), (excs, errors)
            if IMPL == "fastloop":
                assert done and pr.lost.result().errno == errno.ENOSPC
            tr.abort()
            await asyncio.sleep(0.01)
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_listener_fd_not_watchable(impl, shim):
    """S3, the listener: asyncio's create_server() raises at once; fastloop
    learns at its next poll, reports it as running out of a resource, and
    accepts again later, once it can."""
    code = """
        errors = []
        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: errors.append(c))
            ls = socket.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen()
            ls.setblocking(False)
            fail_fd(ls.fileno())
            got = loop.create_future()
            def factory():
                got.set_result(None)
                return asyncio.Protocol()
            try:
                srv = await loop.create_server(factory, sock=ls)
            except OSError as exc:
                assert IMPL == "asyncio" and exc.errno == errno.ENOSPC
                fail_fd(-1)
                ls.close()
                print("ok")
                return
            await asyncio.sleep(0.05)
            fail_fd(-1)
            assert any(isinstance(c.get("exception"), OSError)
                       and c["exception"].errno == errno.ENOSPC
                       for c in errors), errors
            c = socket.create_connection(ls.getsockname())
            await asyncio.wait_for(got, 5)      # after ACCEPT_RETRY_DELAY
            c.close()
            srv.close()
            await srv.wait_closed()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_child_pidfd_not_watchable(impl, shim):
    """S2: the child watcher must not take EV_ERROR for an exit and block in
    waitpid() (the whole loop stalls, GIL held, until the child exits): the
    loop keeps running, and the exit is still reported with its code.
    (asyncio 3.12+'s pidfd watcher raises from subprocess_exec at once.)"""
    code = """
        import sys
        ticks = []
        async def ticker():
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while loop.time() - t0 < 1.5:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.05)

        async def main():
            loop = asyncio.get_running_loop()
            t = asyncio.ensure_future(ticker())
            await asyncio.sleep(0.01)       # ticking already
            fail_pidfds(True)
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", "import time; time.sleep(1); raise SystemExit(3)")
            except OSError as exc:
                assert IMPL == "asyncio" and exc.errno == errno.ENOSPC
                fail_pidfds(False)
                t.cancel()
                print("ok")
                return
            fail_pidfds(False)
            code = await asyncio.wait_for(proc.wait(), 10)
            assert code == 3, code
            await t
            gaps = [b - a for a, b in zip(ticks, ticks[1:])]
            assert max(gaps) < 0.5, max(gaps)
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_sock_op_fd_not_watchable(impl, shim):
    """A sock_* operation that must wait on an fd the loop cannot watch
    fails with the reason (asyncio: from add_reader() at once)."""
    code = """
        async def main():
            loop = asyncio.get_running_loop()
            a, b = socket.socketpair()
            a.setblocking(False)
            fail_fd(a.fileno())
            try:
                await asyncio.wait_for(loop.sock_recv(a, 10), 2)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
            else:
                raise AssertionError("no error")
            fail_fd(-1)
            b.send(b"later")
            assert await asyncio.wait_for(loop.sock_recv(a, 10), 2) == b"later"
            a.close()
            b.close()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_add_reader_fd_not_watchable(impl, shim):
    """add_reader() on an fd epoll refuses: asyncio raises from add_reader();
    fastloop registers with epoll only at its next poll, so it reports the
    OSError(ENOSPC) to the exception handler then and drops the
    registration. Never a silent stall; a later add_reader() works."""
    code = """
        errors = []
        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: errors.append(c))
            a, b = socket.socketpair()
            fail_fd(a.fileno())
            excs = []
            try:
                loop.add_reader(a.fileno(), lambda: None)
            except OSError as exc:
                excs.append(exc)
            await asyncio.sleep(0.05)
            excs += [c.get("exception") for c in errors]
            assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC
                       for e in excs), (excs, errors)
            fail_fd(-1)
            loop.remove_reader(a.fileno())
            got = loop.create_future()
            loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(10)))
            b.send(b"now")
            assert await asyncio.wait_for(got, 2) == b"now"
            loop.remove_reader(a.fileno())
            a.close()
            b.close()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    run_shimmed(code, impl, shim)
