"""loop.sock_* methods: parity with asyncio's selector loop.

Every test runs on asyncio's loop and on fastloop.  Exceptions are compared
with what the socket method itself raises, which is what asyncio passes on.
After each test, fastloop must have no sock_* watcher left started.
"""
import asyncio
import errno
import io
import os
import socket
import ssl
import sys
import tempfile

import pytest

from fl_support import run

PY311 = sys.version_info >= (3, 11)
needs_311 = pytest.mark.skipif(not PY311, reason="sock_recvfrom/sock_sendto are 3.11+")


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def _no_watcher_left(loop):
    yield
    if hasattr(loop, "_sock_watching") and not loop.is_closed():
        # let cancelled operations see their CancelledError
        loop.run_until_complete(asyncio.sleep(0))
        assert loop._sock_watching() == 0


@pytest.fixture
def tcp_pair(loop):
    """A connected (client, server) pair of non-blocking TCP sockets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.socket()
    client.setblocking(False)

    async def connect():
        await loop.sock_connect(client, listener.getsockname())

    run(loop, connect())
    server, _ = listener.accept()
    server.setblocking(False)
    listener.close()
    yield client, server
    client.close()
    server.close()


def _fill(sock):
    """Fill sock's send buffer until send() would block."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    total = 0
    try:
        while True:
            total += sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    return total


def _drain(sock):
    got = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return got
        if not data:
            return got
        got += len(data)


# ---- the awaitable ----

def test_methods_return_coroutines(loop, pair):
    a, b = pair
    ops = [loop.sock_recv(a, 1), loop.sock_recv_into(a, bytearray(1)),
           loop.sock_sendall(a, b"x"), loop.sock_accept(a),
           loop.sock_connect(a, "x")]
    for op in ops:
        assert asyncio.iscoroutine(op)
        op.close()
    assert _drain(b) == 0       # nothing ran: closed before the first step


def test_await_twice_raises(loop, pair):
    a, b = pair
    b.send(b"x")

    async def main():
        op = loop.sock_recv(a, 10)
        assert await op == b"x"
        with pytest.raises(RuntimeError):
            await op

    run(loop, main())


def test_bad_arguments_at_call_time(loop, pair):
    a, b = pair
    with pytest.raises(TypeError):
        loop.sock_recv(a)
    with pytest.raises(TypeError):
        loop.sock_recv(a, 1, 2)
    with pytest.raises(TypeError):
        loop.sock_sendall(a, b"x", bogus=1)
    op = loop.sock_recv(sock=a, n=5)
    b.send(b"hello")
    assert run(loop, op) == b"hello"


def test_create_task_and_run_until_complete(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        assert not task.done()
        b.send(b"late")
        return await task

    assert run(loop, main()) == b"late"
    b.send(b"now")
    assert loop.run_until_complete(loop.sock_recv(a, 100)) == b"now"


# ---- data ----

def test_recv_sendall_round_trip(loop, pair):
    a, b = pair

    async def main():
        await loop.sock_sendall(b, b"ping")
        assert await loop.sock_recv(a, 100) == b"ping"
        waiter = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b"pong")
        assert await waiter == b"pong"
        await loop.sock_sendall(a, b"")
        await loop.sock_sendall(a, bytearray(b"ba"))
        await loop.sock_sendall(a, memoryview(b"xmv")[1:])
        assert await loop.sock_recv(b, 100) == b"bamv"

    run(loop, main())


def test_recv_n_limits_and_zero(loop, pair):
    a, b = pair
    b.send(b"abcdef")

    async def main():
        assert await loop.sock_recv(a, 2) == b"ab"
        assert await loop.sock_recv(a, 0) == b""
        assert await loop.sock_recv(a, 100) == b"cdef"

    run(loop, main())


def test_recv_into(loop, pair):
    a, b = pair

    async def main():
        buf = bytearray(10)
        waiter = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        b.send(b"hello")
        assert await waiter == 5
        assert buf[:5] == b"hello"
        b.send(b"world!")
        with memoryview(buf) as view:
            assert await loop.sock_recv_into(a, view[5:]) == 5
        assert buf == b"hellowor" + b"ld"

    run(loop, main())


def test_large_sendall_slow_reader(loop, tcp_pair):
    client, server = tcp_pair
    data = os.urandom(3 * 1024 * 1024)

    async def reader():
        chunks = []
        n = 0
        while n < len(data):
            await asyncio.sleep(0.001)
            chunk = await loop.sock_recv(server, 100_000)
            assert chunk
            chunks.append(chunk)
            n += len(chunk)
        return b"".join(chunks)

    async def main():
        r = asyncio.ensure_future(reader())
        await loop.sock_sendall(client, data)
        return await r

    assert run(loop, main(), timeout=30) == data


def test_huge_recv_into_and_sendall_bytearray(loop, tcp_pair):
    client, server = tcp_pair
    data = bytearray(os.urandom(2 * 1024 * 1024))

    async def main():
        sender = asyncio.ensure_future(loop.sock_sendall(client, data))
        await asyncio.sleep(0)
        if not sender.done():
            # the view is held while sending, as asyncio's memoryview
            with pytest.raises(BufferError):
                data.extend(b"x")
        buf = bytearray(len(data))
        view = memoryview(buf)
        got = 0
        while got < len(data):
            got += await loop.sock_recv_into(server, view[got:])
        await sender
        view.release()
        return buf

    assert run(loop, main(), timeout=30) == data


def test_eof(loop, pair):
    a, b = pair

    async def main():
        waiter = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.shutdown(socket.SHUT_WR)
        assert await waiter == b""
        assert await loop.sock_recv(a, 10) == b""
        assert await loop.sock_recv_into(a, bytearray(4)) == 0

    run(loop, main())


# ---- errors ----

def test_connection_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        with pytest.raises(ConnectionRefusedError) as info:
            run(loop, loop.sock_connect(sock, addr))
        assert info.value.errno == errno.ECONNREFUSED
        assert str(addr) in str(info.value)
    finally:
        sock.close()


def test_connect_resolves_names(loop):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = socket.socket()
    sock.setblocking(False)
    try:
        run(loop, loop.sock_connect(sock, ("localhost", listener.getsockname()[1])))
        assert sock.getpeername() == listener.getsockname()
    finally:
        sock.close()
        listener.close()


def test_unix_connect(loop, tmp_path):
    path = str(tmp_path / "sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    sock = socket.socket(socket.AF_UNIX)
    sock.setblocking(False)
    try:
        run(loop, loop.sock_connect(sock, path))
        conn, _ = listener.accept()
        with conn:
            conn.send(b"unix")
            assert run(loop, loop.sock_recv(sock, 10)) == b"unix"
    finally:
        sock.close()
        listener.close()


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.close()


def test_peer_reset_while_waiting(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        waiter = asyncio.ensure_future(loop.sock_recv(client, 10))
        await asyncio.sleep(0.01)
        _reset(server)
        with pytest.raises(ConnectionResetError):
            await waiter

    run(loop, main())


def test_peer_reset_during_sendall(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        sender = asyncio.ensure_future(
            loop.sock_sendall(client, b"x" * (16 * 1024 * 1024)))
        await asyncio.sleep(0.01)
        assert not sender.done()
        _reset(server)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            await sender

    run(loop, main())


def test_recv_on_closed_socket(loop, pair):
    a, b = pair
    a.close()
    with pytest.raises(OSError) as expected:
        a.recv(10)
    for coro in (loop.sock_recv(a, 10), loop.sock_sendall(a, b"x"),
                 loop.sock_recv_into(a, bytearray(3))):
        with pytest.raises(OSError) as info:
            run(loop, coro)
        assert type(info.value) is type(expected.value)
        assert info.value.errno == expected.value.errno == errno.EBADF


def test_close_socket_while_waiting(loop, pair):
    """asyncio never completes such a wait; fastloop must not crash."""
    a, b = pair

    async def main():
        waiter = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        a.close()
        done, _ = await asyncio.wait([waiter], timeout=0.05)
        if not done:
            waiter.cancel()
        # the loop still works
        c, d = socket.socketpair()
        with c, d:
            c.setblocking(False)
            d.setblocking(False)
            await loop.sock_sendall(c, b"still")
            assert await loop.sock_recv(d, 10) == b"still"

    run(loop, main())


def test_close_socket_while_waiting_fd_reused(impl, loop, pair):
    # asyncio's selector keeps the closed fd in its map: a new socket with
    # the same number is then never polled (it hangs), so fastloop only.
    if impl == "asyncio":
        pytest.skip("asyncio loses a reused fd")
    a, b = pair

    async def main():
        waiter = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        fd = a.fileno()
        a.close()
        c, d = socket.socketpair()
        with c, d:
            assert fd in (c.fileno(), d.fileno())
            c.setblocking(False)
            d.setblocking(False)
            r1 = asyncio.ensure_future(loop.sock_recv(c, 10))
            r2 = asyncio.ensure_future(loop.sock_recv(d, 10))
            await asyncio.sleep(0)
            await loop.sock_sendall(d, b"to-c")
            await loop.sock_sendall(c, b"to-d")
            assert await r1 == b"to-c"
            assert await r2 == b"to-d"
        await asyncio.sleep(0.01)
        if waiter.done():
            with pytest.raises(OSError):
                waiter.result()
        else:
            waiter.cancel()

    run(loop, main())


def test_wrong_types(loop, pair):
    a, b = pair

    def expected(fn, *args):
        with pytest.raises(Exception) as info:
            fn(*args)
        return type(info.value), str(info.value)

    cases = [
        (loop.sock_recv, (a, "x"), a.recv, ("x",)),
        (loop.sock_recv, (a, -1), a.recv, (-1,)),
        (loop.sock_recv, (a, 1.5), a.recv, (1.5,)),
        (loop.sock_recv_into, (a, b"ro"), a.recv_into, (b"ro",)),
        (loop.sock_recv_into, (a, "str"), a.recv_into, ("str",)),
        (loop.sock_sendall, (a, "str"), a.send, ("str",)),
        (loop.sock_sendall, (a, 42), a.send, (42,)),
    ]
    for method, args, raw, raw_args in cases:
        exp = expected(raw, *raw_args)
        with pytest.raises(Exception) as info:
            run(loop, method(*args))
        assert (type(info.value), str(info.value)) == exp, method
    with pytest.raises(AttributeError):
        run(loop, loop.sock_recv(None, 10))
    with pytest.raises(AttributeError):
        run(loop, loop.sock_sendall(object(), b"x"))


def test_ssl_socket_rejected(loop):
    ctx = ssl.create_default_context()
    sock = ctx.wrap_socket(socket.socket(), server_hostname="example.com",
                           do_handshake_on_connect=False)
    with sock:
        for coro in (loop.sock_recv(sock, 1), loop.sock_sendall(sock, b"x"),
                     loop.sock_recv_into(sock, bytearray(1)),
                     loop.sock_accept(sock), loop.sock_connect(sock, ("127.0.0.1", 1))):
            with pytest.raises(TypeError, match="SSLSocket"):
                run(loop, coro)


def test_blocking_socket_debug_mode(loop, pair):
    a, b = pair
    a.setblocking(True)
    loop.set_debug(True)
    coros = [loop.sock_recv(a, 1), loop.sock_recv_into(a, bytearray(1)),
             loop.sock_sendall(a, b"x"), loop.sock_accept(a),
             loop.sock_connect(a, "x")]
    if PY311:
        coros += [loop.sock_recvfrom(a, 1), loop.sock_sendto(a, b"x", "x"),
                  loop.sock_recvfrom_into(a, bytearray(1))]
    for coro in coros:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(loop, coro)


def test_blocking_socket_without_debug(loop, pair):
    # asyncio only checks in debug mode; with data ready, the call succeeds
    a, b = pair
    a.setblocking(True)
    b.send(b"ready")
    assert run(loop, loop.sock_recv(a, 10)) == b"ready"
    run(loop, loop.sock_sendall(a, b"back"))
    assert b.recv(10) == b"back"


class _Wrapper:
    """A socket-like object: sock_* must use its methods, like asyncio."""

    def __init__(self, sock):
        self._sock = sock
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self._sock, name)
        if callable(attr):
            def call(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return call
        return attr


def test_socket_like_object(loop, pair):
    a, b = pair
    wa = _Wrapper(a)

    async def main():
        waiter = asyncio.ensure_future(loop.sock_recv(wa, 10))
        await asyncio.sleep(0)
        b.send(b"wrapped")
        assert await waiter == b"wrapped"
        await loop.sock_sendall(wa, b"out")
        assert b.recv(10) == b"out"
        b.send(b"q")
        buf = bytearray(4)
        assert await loop.sock_recv_into(wa, buf) == 1
        assert buf[:1] == b"q"

    run(loop, main())
    assert "recv" in wa.calls and "send" in wa.calls and "fileno" in wa.calls


# ---- cancellation ----

def test_cancel_recv_then_reuse(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.send(b"after")
        # nothing consumed the data: the cancelled op is gone
        await asyncio.sleep(0.01)
        assert await loop.sock_recv(a, 100) == b"after"

    run(loop, main())


def test_cancel_recv_data_already_there(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        b.send(b"racing")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await loop.sock_recv(a, 100) == b"racing"

    run(loop, main())


def test_wait_for_timeout_recv(loop, pair):
    a, b = pair

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_recv(a, 10), 0.02)
        b.send(b"ok")
        assert await loop.sock_recv(a, 10) == b"ok"

    run(loop, main())


def test_cancel_sendall_then_reuse(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        filled = _fill(client)
        task = asyncio.ensure_future(loop.sock_sendall(client, b"hello"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        reader = asyncio.ensure_future(_read_all(loop, server))
        await loop.sock_sendall(client, b"world")
        client.shutdown(socket.SHUT_WR)
        data = await reader
        assert data.endswith(b"world")
        assert len(data) >= filled + 5

    run(loop, main(), timeout=20)


async def _read_all(loop, sock):
    chunks = []
    while True:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_cancel_accept_then_accept(loop):
    listener = socket.socket()
    listener.setblocking(False)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with pytest.raises(asyncio.TimeoutError):
            run(loop, asyncio.wait_for(loop.sock_accept(listener), 0.02))
        client = socket.socket()
        client.connect(listener.getsockname())
        conn, addr = run(loop, loop.sock_accept(listener))
        with conn, client:
            assert conn.gettimeout() == 0
            assert addr == client.getsockname()
    finally:
        listener.close()


def test_cancel_connect(loop):
    # a connect that cannot finish at once: to an unroutable address
    sock = socket.socket()
    sock.setblocking(False)
    try:
        try:
            run(loop, asyncio.wait_for(
                loop.sock_connect(sock, ("10.255.255.1", 9)), 0.05))
        except (asyncio.TimeoutError, OSError):
            pass
        else:
            pytest.skip("this network answers 10.255.255.1 at once")
    finally:
        sock.close()


def test_close_loop_with_pending_op(loop_factory, pair):
    a, b = pair
    lp = loop_factory()
    task = lp.create_task(lp.sock_recv(a, 10))
    lp.run_until_complete(asyncio.sleep(0.01))
    assert not task.done()
    lp.close()
    if hasattr(lp, "_sock_watching"):
        assert lp._sock_watching() == 0
    b.send(b"x")
    assert a.recv(10) == b"x"


# ---- accept, UDP ----

def test_sock_accept(loop):
    listener = socket.socket()
    listener.setblocking(False)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)

    async def main():
        acc = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        conn, addr = await acc
        with conn, client:
            assert conn.gettimeout() == 0
            assert addr == client.getsockname()
            await loop.sock_sendall(conn, b"hi")
            assert await loop.sock_recv(client, 2) == b"hi"

    try:
        run(loop, main())
    finally:
        listener.close()


@needs_311
def test_udp(loop):
    s1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (s1, s2):
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))

    async def main():
        waiter = asyncio.ensure_future(loop.sock_recvfrom(s2, 100))
        await asyncio.sleep(0)
        assert await loop.sock_sendto(s1, b"dgram", s2.getsockname()) == 5
        assert await waiter == (b"dgram", s1.getsockname())
        buf = bytearray(10)
        waiter = asyncio.ensure_future(loop.sock_recvfrom_into(s1, buf))
        await asyncio.sleep(0)
        await loop.sock_sendto(s2, b"back", s1.getsockname())
        assert await waiter == (4, s2.getsockname())
        assert buf[:4] == b"back"
        await loop.sock_sendto(s2, b"abcdef", s1.getsockname())
        assert await loop.sock_recvfrom_into(s1, buf, 3) == (3, s2.getsockname())
        assert buf[:3] == b"abc"

    try:
        run(loop, main())
    finally:
        s1.close()
        s2.close()


@needs_311
def test_udp_bad_address(loop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    with s:
        with pytest.raises(Exception) as expected:
            s.sendto(b"x", "not an address")
        with pytest.raises(type(expected.value)):
            run(loop, loop.sock_sendto(s, b"x", "not an address"))


def test_recvfrom_absent_before_311(loop):
    if PY311:
        assert hasattr(loop, "sock_recvfrom")
    else:
        assert not hasattr(loop, "sock_recvfrom")
        assert not hasattr(loop, "sock_sendto")


# ---- sendfile ----

@pytest.fixture
def datafile():
    data = os.urandom(300_000)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        yield f, data


def _sendfile_and_read(loop, client, server, coro):
    async def main():
        reader = asyncio.ensure_future(_read_all(loop, server))
        ret = await coro
        client.shutdown(socket.SHUT_WR)
        return ret, await reader
    return run(loop, main(), timeout=20)


def test_sock_sendfile(loop, tcp_pair, datafile):
    client, server = tcp_pair
    f, data = datafile
    ret, got = _sendfile_and_read(loop, client, server,
                                  loop.sock_sendfile(client, f))
    assert ret == len(data)
    assert got == data
    assert f.tell() == len(data)


def test_sock_sendfile_offset_count(loop, tcp_pair, datafile):
    client, server = tcp_pair
    f, data = datafile
    ret, got = _sendfile_and_read(loop, client, server,
                                  loop.sock_sendfile(client, f, 1000, 2000))
    assert ret == 2000
    assert got == data[1000:3000]
    assert f.tell() == 3000


def test_sock_sendfile_empty(loop, tcp_pair):
    client, server = tcp_pair
    with tempfile.TemporaryFile() as f:
        assert run(loop, loop.sock_sendfile(client, f)) == 0
        assert f.tell() == 0


def test_sock_sendfile_fallback(loop, tcp_pair):
    client, server = tcp_pair
    data = os.urandom(100_000)
    f = io.BytesIO(data)
    ret, got = _sendfile_and_read(loop, client, server,
                                  loop.sock_sendfile(client, f, 10))
    assert ret == len(data) - 10
    assert got == data[10:]
    assert f.tell() == len(data)
    with pytest.raises(asyncio.SendfileNotAvailableError):
        run(loop, loop.sock_sendfile(client, io.BytesIO(b"x"), fallback=False))


def test_sock_sendfile_bad_arguments(loop, tcp_pair, datafile):
    client, server = tcp_pair
    f, data = datafile
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            run(loop, loop.sock_sendfile(udp, f))
    with pytest.raises(ValueError, match="count"):
        run(loop, loop.sock_sendfile(client, f, 0, 0))
    with pytest.raises(ValueError, match="offset"):
        run(loop, loop.sock_sendfile(client, f, -1))
    with pytest.raises(TypeError, match="offset"):
        run(loop, loop.sock_sendfile(client, f, "0"))
    with open(__file__) as text:
        with pytest.raises(ValueError, match="binary mode"):
            run(loop, loop.sock_sendfile(client, text))


# ---- resources ----

def test_no_fd_leak(loop):
    async def one_round():
        listener = socket.socket()
        listener.setblocking(False)
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        client = socket.socket()
        client.setblocking(False)
        acc = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, _ = await acc
        t = asyncio.ensure_future(loop.sock_recv(conn, 10))
        await asyncio.sleep(0)
        t.cancel()
        await loop.sock_sendall(client, b"abc")
        assert await loop.sock_recv(conn, 10) == b"abc"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_accept(listener), 0.001)
        for s in (listener, client, conn):
            s.close()

    run(loop, one_round())
    before = _open_fds()
    for _ in range(20):
        run(loop, one_round())
    assert _open_fds() == before


def test_many_concurrent_echoes(loop):
    listener = socket.socket()
    listener.setblocking(False)
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)

    async def serve(conn):
        with conn:
            while True:
                data = await loop.sock_recv(conn, 65536)
                if not data:
                    return
                await loop.sock_sendall(conn, data)

    async def client(i):
        s = socket.socket()
        s.setblocking(False)
        with s:
            await loop.sock_connect(s, listener.getsockname())
            for j in range(20):
                msg = f"{i}:{j}".encode() * 50
                await loop.sock_sendall(s, msg)
                got = b""
                while len(got) < len(msg):
                    got += await loop.sock_recv(s, 65536)
                assert got == msg

    async def main():
        servers = []

        async def acceptor():
            while True:
                conn, _ = await loop.sock_accept(listener)
                conn.setblocking(False)
                servers.append(asyncio.ensure_future(serve(conn)))

        acc = asyncio.ensure_future(acceptor())
        await asyncio.gather(*(client(i) for i in range(30)))
        acc.cancel()
        await asyncio.gather(*servers)

    try:
        run(loop, main(), timeout=20)
    finally:
        listener.close()
