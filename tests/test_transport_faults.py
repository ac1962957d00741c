"""Transport faults from issue #10: crashes, hangs, wrong peers and wrong
contexts in the stream, datagram, sock_*, server and subprocess code, on
asyncio's loop and on fastloop.

Crash repros run in a child interpreter, so that a regression fails one
test instead of killing the session.
"""
import asyncio
import contextvars
import gc
import os
import socket
import sys
import tempfile
import weakref

import pytest

from fl_support import PY312, describe, run, run_py

test_utils = pytest.importorskip("test.test_asyncio.utils")

VAR = contextvars.ContextVar("VAR", default="ambient")


class Recorder(asyncio.Protocol):
    def __init__(self, loop):
        self.transport = None
        self.data = bytearray()
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, tr):
        self.transport = tr
        self.made.set_result(tr)

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def accepted_pair(loop):
    """A connected stream transport on one end of a socketpair, the other
    end (a plain non-blocking socket) for the test to drive."""
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
    await pr.made
    return tr, pr, a, b


# ---- C11: set_write_buffer_limits() with huge values ----

def test_write_buffer_limits_beyond_ssize_t(loop):
    async def main():
        tr, pr, a, b = await accepted_pair(loop)
        with b:
            # high defaults to 4 * low: 2**64, beyond a C ssize_t.
            tr.set_write_buffer_limits(low=2**62)
            assert tr.get_write_buffer_limits() == (2**62, 2**64)
            tr.set_write_buffer_limits(high=2**70)
            assert tr.get_write_buffer_limits() == (2**68, 2**70)
            tr.set_write_buffer_limits(high=2**70, low=2**63)
            assert tr.get_write_buffer_limits() == (2**63, 2**70)
            with pytest.raises(ValueError) as info:
                tr.set_write_buffer_limits(low=-2**70)
            assert str(info.value) == (f"high ({-2**72}) must be >= low "
                                       f"({-2**70}) must be >= 0")
            with pytest.raises(ValueError, match=r"high \(1\) must be >= "
                                                 r"low \(2\)"):
                tr.set_write_buffer_limits(high=1, low=2)
            # still a working transport, never paused by the huge marks
            tr.set_write_buffer_limits(high=2**64)
            tr.write(b"x" * 100)
            assert tr.get_write_buffer_limits() == (2**62, 2**64)
            tr.set_write_buffer_limits()
            assert tr.get_write_buffer_limits() == (16384, 65536)
            tr.close()
            await pr.lost

    run(loop, main())


def test_datagram_write_buffer_limits_beyond_ssize_t(loop):
    async def main():
        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        tr.set_write_buffer_limits(low=2**62)
        assert tr.get_write_buffer_limits() == (2**62, 2**64)
        tr.close()
        await asyncio.sleep(0)

    run(loop, main())


# ---- C8: writelines() failing partway ----

def test_writelines_failing_item_leaves_transport_usable(loop, errors):
    """A non-contiguous memoryview: 3.11's writelines raises TypeError from
    b''.join() before writing anything; 3.12+ takes it, sendmsg() then
    fails and the transport is aborted (a fatal error). Either way close()
    must reach connection_lost(), and nothing may stay queued unsent."""
    async def main():
        tr, pr, a, b = await accepted_pair(loop)
        with b:
            try:
                tr.writelines([b"abc", memoryview(b"abcdef")[::2]])
            except (TypeError, BufferError):
                assert not PY312
                # Nothing was queued: the transport still writes.
                assert tr.get_write_buffer_size() == 0
                tr.write(b"after")
                await asyncio.sleep(0.01)
                assert b.recv(100) == b"after"
            else:
                assert PY312
                exc = await asyncio.wait_for(pr.lost, 5)
                assert isinstance(exc, BufferError)
                assert errors and errors[0]["exception"] is exc
            tr.close()
            await asyncio.wait_for(pr.lost, 5)
            assert tr.get_write_buffer_size() == 0

    run(loop, main())


ASYNCIO_315_WRITELINES = (
    "3.15's asyncio writelines() queues the items before it checks them (a "
    "bad item leaves the earlier ones in the buffer) and takes len() of "
    "each (an object with only __buffer__ fails there): fastloop checks "
    "every item first and reads each through the buffer protocol")


def test_writelines_not_bytes_raises_before_writing(loop, impl):
    if impl == "asyncio" and sys.version_info >= (3, 15):
        pytest.skip(ASYNCIO_315_WRITELINES)
    async def main():
        tr, pr, a, b = await accepted_pair(loop)
        with b:
            with pytest.raises(TypeError):
                tr.writelines([b"abc", 42])
            assert tr.get_write_buffer_size() == 0
            tr.writelines([b"d", bytearray(b"e"), memoryview(b"f")])
            await asyncio.sleep(0.01)
            assert b.recv(100) == b"def"
            tr.close()
            await asyncio.wait_for(pr.lost, 5)

    run(loop, main())


# ---- C5 (3.12+): writelines() whose item's __buffer__ mutates the list ----

@pytest.mark.skipif(not PY312, reason="__buffer__ in Python: 3.12+")
@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_writelines_item_buffer_mutates_list(impl):
    if impl == "asyncio" and sys.version_info >= (3, 15):
        pytest.skip(ASYNCIO_315_WRITELINES)
    code = """
        import socket, gc
        lst = []

        class Evil:
            def __buffer__(self, flags):
                lst.clear()
                # reuse the freed item array for something else
                junk = [bytes([i]) * 64 for i in range(200)]
                gc.collect()
                return memoryview(b"EVIL")

        async def main():
            loop = asyncio.get_running_loop()
            a, b = socket.socketpair()
            b.setblocking(False)
            tr, pr = await loop.connect_accepted_socket(asyncio.Protocol, a)
            lst[:] = [Evil()] + [bytes([65 + i]) * 3 for i in range(20)]
            tr.writelines(lst)
            await asyncio.sleep(0.05)
            got = b.recv(1000)
            full = b"EVIL" + b"".join(bytes([65 + i]) * 3 for i in range(20))
            # asyncio's list comprehension stops at the cleared list; a
            # snapshot of the list sends it all: a prefix either way.
            assert got.startswith(b"EVIL") and full.startswith(got), got
            tr.close()
            await asyncio.sleep(0)
            b.close()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    proc = run_py(code, impl)
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)


# ---- C4 (3.12+): the datagram address's __buffer__ aborts the transport ----

@pytest.mark.skipif(not PY312, reason="__buffer__ in Python: 3.12+")
@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_datagram_address_buffer_aborts_transport(impl, tmp_path):
    code = """
        import socket, sys
        path = sys.argv[1]
        state = {"drained": False, "tr": None}

        class Addr:
            # An AF_UNIX address the socket module reads through the
            # buffer protocol: Python code in the middle of sendto().
            def __buffer__(self, flags):
                if state["drained"] and not state["tr"].is_closing():
                    state["tr"].abort()
                return memoryview(path.encode())

        class P(asyncio.DatagramProtocol):
            def __init__(self):
                self.lost = []
            def connection_lost(self, exc):
                self.lost.append(exc)

        async def main():
            loop = asyncio.get_running_loop()
            rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            rx.bind(path)
            rx.setblocking(False)
            tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            tr, pr = await loop.create_datagram_endpoint(P, sock=tx)
            state["tr"] = tr
            addr = Addr()
            # Fill the receiver's queue: later datagrams are buffered.
            for i in range(3000):
                tr.sendto(b"d%d" % i, addr)
                if tr.get_write_buffer_size():
                    break
            for i in range(20):
                tr.sendto(b"q%d" % i, addr)
            assert tr.get_write_buffer_size() > 0
            # Drain the receiver: the next buffered datagram goes out, and
            # Addr.__buffer__ aborts the transport in the middle of its
            # sendto(), which then succeeds.
            try:
                while True:
                    rx.recv(100)
            except BlockingIOError:
                pass
            state["drained"] = True
            for _ in range(200):
                await asyncio.sleep(0.001)
                if pr.lost:
                    break
            await asyncio.sleep(0.01)
            assert pr.lost == [None], pr.lost
            if IMPL == "fastloop":
                # (asyncio puts the datagram it popped back into the
                # buffer it had just cleared: 3.12's count stays > 0.)
                assert tr.get_write_buffer_size() == 0
            rx.close()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    proc = run_py(code, impl, args=[str(tmp_path / "rx.sock")])
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)


# ---- S8: a datagram transport never closed ----

def test_unclosed_datagram_transport_does_not_keep_loop_alive(loop_factory):
    import warnings
    loop = loop_factory()

    async def main():
        await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    ref = weakref.ref(loop)
    asyncio.set_event_loop(None)
    del loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(3):
            gc.collect()
    assert ref() is None, gc.get_referrers(ref())


# ---- S7: a socket closed under a live stream transport ----

def test_socket_closed_under_transport_fd_reused_write(loop):
    """write() after the transport's socket was closed behind its back,
    its number taken by a new socket: asyncio's sock.send() raises EBADF
    and the transport is lost; no byte may reach the new socket's peer."""
    extra = []

    async def main():
        tr, pr, a, b = await accepted_pair(loop)
        fd = a.fileno()
        a.close()
        c, d = socket.socketpair()
        with b, c, d:
            d.setblocking(False)
            assert fd in (c.fileno(), d.fileno())
            other = d if c.fileno() == fd else c
            other.setblocking(False)
            tr.write(b"wrong peer")
            tr.writelines([b"wrong", b"peer"])
            exc = await asyncio.wait_for(pr.lost, 5)
            assert isinstance(exc, OSError)
            await asyncio.sleep(0.01)
            with pytest.raises(BlockingIOError):
                other.recv(100)

    run(loop, main())


def test_socket_closed_under_transport_fd_reused_read(impl, loop):
    """The number is reused and polled again (3.12+: a socket transport on it
    is refused while the old transport owns it, as asyncio does; a pipe
    transport is not): the old transport must not read the new socket's
    bytes. (asyncio's selector keeps the old key and gives the new reader
    that key's stale registration: the new transport is never polled, so
    only fastloop is checked for delivery.)"""
    extra = []

    async def main():
        tr, pr, a, b = await accepted_pair(loop)
        fd = a.fileno()
        a.close()
        c, d = socket.socketpair()
        with b, d:
            if c.fileno() != fd:
                c, d = d, c
            assert c.fileno() == fd
            if PY312:   # (3.11's asyncio does not check)
                with pytest.raises(RuntimeError, match="is used by transport"):
                    await loop.connect_accepted_socket(lambda: Recorder(loop),
                                                       c)
            if c.fileno() == -1:
                # 3.14+: the refused call closed the socket (on both loops);
                # the next pair gets the same number again.
                d.close()
                c, d = socket.socketpair()
                if c.fileno() != fd:
                    c, d = d, c
                assert c.fileno() == fd
                extra.append(d)
            tr2, pr2 = await loop.connect_read_pipe(lambda: Recorder(loop), c)
            await pr2.made
            d.send(b"for the new one")
            for _ in range(100):
                await asyncio.sleep(0.002)
                if pr2.data or pr.lost.done():
                    break
            assert bytes(pr.data) == b""
            if impl == "fastloop":
                while len(pr2.data) < 15:
                    await asyncio.sleep(0.002)
                assert bytes(pr2.data) == b"for the new one"
            tr2.close()
            tr.abort()

    try:
        run(loop, main())
    finally:
        for s in extra:
            s.close()


# ---- C6: sock_sendfile() on a socket subclass, socket closed mid-way ----

class SockSub(socket.socket):
    pass


def test_sock_sendfile_subclass_closed_mid_transfer(impl, loop):
    """The number the transfer started on is reused, and polled for
    writing: not one byte of the file may reach the new socket."""
    async def main():
        x, b = socket.socketpair()
        a = SockSub(socket.AF_UNIX, socket.SOCK_STREAM, fileno=x.detach())
        a.setblocking(False)
        b.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with tempfile.TemporaryFile() as f:
            f.write(b"F" * (4 * 1024 * 1024))
            f.flush()
            f.seek(0)
            task = asyncio.ensure_future(loop.sock_sendfile(a, f))
            await asyncio.sleep(0.01)
            assert not task.done()
            fd = a.fileno()
            a.close()
            c, d = socket.socketpair()
            with b, c, d:
                if c.fileno() != fd:
                    c, d = d, c
                assert c.fileno() == fd
                c.setblocking(False)
                d.setblocking(False)
                # Anything that polls the reused number for writing.
                payload = b"h" * (1024 * 1024)
                w = asyncio.ensure_future(loop.sock_sendall(c, payload))
                got = b""
                for _ in range(500):
                    await asyncio.sleep(0.002)
                    try:
                        while True:
                            got += d.recv(65536)
                    except BlockingIOError:
                        pass
                    if w.done() and len(got) >= len(payload):
                        break
                assert b"F" not in got
                if impl == "fastloop":
                    assert got == payload
                    await w
                else:
                    # asyncio's selector still holds the closed socket's
                    # key for that number: the new socket is never polled.
                    w.cancel()
                if task.done():
                    with pytest.raises(OSError):
                        task.result()
                else:
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task

    run(loop, main())


# ---- B1: a TLS server's callbacks run in create_server()'s context ----

@pytest.mark.parametrize("unix", [False, True])
def test_tls_server_protocol_context(loop, unix, tmp_path):
    async def main():
        seen = []
        done = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                seen.append(("made", VAR.get()))

            def data_received(self, data):
                seen.append(("data", VAR.get()))

            def eof_received(self):
                seen.append(("eof", VAR.get()))

            def connection_lost(self, exc):
                seen.append(("lost", VAR.get()))
                done.set_result(None)

        path = str(tmp_path / "s.sock")

        async def start():
            VAR.set("server")
            sslctx = test_utils.simple_server_sslcontext()
            if unix:
                return await loop.create_unix_server(P, path, ssl=sslctx)
            return await loop.create_server(P, "127.0.0.1", 0, ssl=sslctx)

        srv = await asyncio.ensure_future(start())
        if unix:
            target = dict(path=path)
            connect = loop.create_unix_connection
        else:
            host, port = srv.sockets[0].getsockname()[:2]
            target = dict(host=host, port=port)
            connect = loop.create_connection
        VAR.set("client")
        tr, _ = await connect(asyncio.Protocol,
                              ssl=test_utils.simple_client_sslcontext(),
                              server_hostname="", **target)
        tr.write(b"hello")
        await asyncio.sleep(0.05)
        tr.close()
        await asyncio.wait_for(done, 10)
        srv.close()
        await srv.wait_closed()
        assert seen and all(v == "server" for _, v in seen), seen
        assert [k for k, _ in seen][0] == "made" and ("data", "server") in seen

    run(loop, main(), timeout=20)


def test_tls_start_server_handler_context(loop):
    async def main():
        seen = []

        async def handler(reader, writer):
            seen.append(VAR.get())
            await reader.read()
            writer.close()

        async def start():
            VAR.set("server")
            return await asyncio.start_server(
                handler, "127.0.0.1", 0,
                ssl=test_utils.simple_server_sslcontext())

        srv = await asyncio.ensure_future(start())
        host, port = srv.sockets[0].getsockname()[:2]
        VAR.set("client")
        reader, writer = await asyncio.open_connection(
            host, port, ssl=test_utils.simple_client_sslcontext(),
            server_hostname="")
        writer.write(b"x")
        writer.write_eof() if writer.can_write_eof() else None
        writer.close()
        await writer.wait_closed()
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
        srv.close()
        await srv.wait_closed()
        assert seen == ["server"]

    run(loop, main(), timeout=20)


# ---- B3 (3.12+): a subprocess protocol's callbacks in the caller's context ----

@pytest.mark.skipif(not PY312, reason="3.11's threaded child watcher runs "
                    "process_exited() in its thread's empty context")
def test_subprocess_protocol_context(loop):
    async def main():
        seen = []
        done = loop.create_future()

        class P(asyncio.SubprocessProtocol):
            def process_exited(self):
                seen.append(("exited", VAR.get()))

            def connection_lost(self, exc):
                seen.append(("lost", VAR.get()))
                done.set_result(None)

        async def spawn():
            VAR.set("caller")
            return await loop.subprocess_exec(P, sys.executable, "-c", "pass",
                                              stdin=None, stdout=None,
                                              stderr=None)

        tr, _ = await asyncio.create_task(spawn())
        assert VAR.get() == "ambient"
        await asyncio.wait_for(done, 10)
        tr.close()
        assert ("exited", "caller") in seen, seen
        assert ("lost", "caller") in seen, seen

    run(loop, main())


# ---- Class 1/3: the socket closed by a protocol callback ----

@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_socket_closed_in_connection_made(impl):
    """connection_made() closes the socket it was given: fastloop started
    the read watcher on the closed fd right after, and libev aborted the
    whole process at its next poll (an assertion in epoll_ctl)."""
    code = """
        import socket
        class P(asyncio.Protocol):
            def __init__(self):
                self.lost = asyncio.get_running_loop().create_future()
            def connection_made(self, tr):
                a.close()
            def connection_lost(self, exc):
                self.lost.set_result(exc)

        errors = []
        async def main():
            global a
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: errors.append(c))
            a, b = socket.socketpair()
            tr, pr = await loop.connect_accepted_socket(P, a)
            await asyncio.sleep(0.05)
            if IMPL == "fastloop":
                exc = await asyncio.wait_for(pr.lost, 5)
                assert isinstance(exc, OSError), exc
            else:
                # asyncio's _add_reader raises into the exception handler
                assert errors and isinstance(errors[0]["exception"], OSError)
            tr.abort()
            await asyncio.sleep(0.01)
            b.close()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    proc = run_py(code, impl)
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)


@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_socket_closed_after_write_queued(impl):
    """A write that waits for the socket (the write watcher started, not yet
    polled), then the socket closed before the loop polls again."""
    code = """
        import socket
        async def main():
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda l, c: None)
            a, b = socket.socketpair()
            lost = loop.create_future()
            class P(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.set_result(exc)
            tr, pr = await loop.connect_accepted_socket(P, a)
            await asyncio.sleep(0.01)
            tr.write(b"x" * (8 * 1024 * 1024))
            assert tr.get_write_buffer_size() > 0
            a.close()
            try:
                tr.pause_reading()
                tr.resume_reading()
            except OSError:
                assert IMPL == "asyncio"    # its selector.modify() raises
            if IMPL == "fastloop":
                # (asyncio's write waits on a registration epoll dropped.)
                exc = await asyncio.wait_for(lost, 5)
                assert isinstance(exc, OSError), exc
            tr.abort()
            await asyncio.sleep(0.01)
            b.close()
            print("ok")

        loop = new_loop()
        loop.run_until_complete(main())
        loop.close()
    """
    proc = run_py(code, impl)
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)


# ---- Class 1: Python code between a check and the libev call ----

@pytest.mark.parametrize("impl", ["asyncio", "fastloop"])
def test_sock_op_loop_closed_during_checks(impl):
    """A sock_* operation that must wait checks that the loop is open, then
    runs Python code (the fd map, fileno(), allocations) before it starts
    its watcher: here that code closes the loop. fastloop handed libev the
    destroyed loop (a crash); asyncio raises 'Event loop is closed'."""
    code = """
        import socket
        base = type(new_loop())

        class L(base):
            close_now = False

            @property
            def _transports(self):
                if self.close_now:
                    self.close_now = False
                    self.close()
                return self.__dict__.setdefault("_map", {})

            @_transports.setter
            def _transports(self, value):
                self.__dict__["_map"] = value

        lp = L()
        a, b = socket.socketpair()
        a.setblocking(False)
        op = lp.sock_recv(a, 10)
        lp.close_now = True
        try:
            op.send(None)
        except RuntimeError as exc:
            assert "closed" in str(exc), exc
        else:
            raise AssertionError("no error")
        op.close()
        assert lp.is_closed()
        a.close()
        b.close()
        print("ok")
    """
    proc = run_py(code, impl)
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)
