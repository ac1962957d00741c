"""fd numbers are reused (issue #10, class 3), on asyncio's loop and fastloop.

For every kind of pending operation on a socket or pipe (sock_* ops,
sendfile, stream/datagram/pipe transports, a server's listener), the
socket or pipe is closed behind the operation's back, and a new one takes
the same number and is polled again: no byte and no callback may reach the
wrong peer.

asyncio's selector keeps the closed fd's key: a new socket on the same
number is registered under that stale key and never polled (epoll dropped
the fd). So the new socket's own traffic is only checked on fastloop; the
"nothing reaches the wrong peer" half is checked on both.
"""
import asyncio
import os
import socket
import tempfile

import pytest

from fl_support import run

WAIT = 0.3      # how long a stale operation gets to misbehave


class SockSub(socket.socket):
    """A socket.socket subclass: fastloop's generic (non-C) path."""


def make_pair(sub, family=socket.AF_UNIX, type=socket.SOCK_STREAM):
    a, b = socket.socketpair(family, type)
    if sub:
        a = SockSub(family, type, fileno=a.detach())
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def pair_on(fd, type=socket.SOCK_STREAM):
    """A new socketpair whose first socket has number fd."""
    c, d = socket.socketpair(socket.AF_UNIX, type)
    if c.fileno() != fd:
        c, d = d, c
    assert c.fileno() == fd, (fd, c.fileno(), d.fileno())
    c.setblocking(False)
    d.setblocking(False)
    return c, d


def fill(sock):
    """Fills sock's send buffer (its peer does not read)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        while True:
            sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass


def drain(sock):
    got = b""
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except BlockingIOError:
        pass
    return got


async def settle(*futs):
    """Gives stale watchers WAIT seconds to fire; the futures done by then."""
    await asyncio.wait(futs, timeout=WAIT)


def quietly(*fns):
    """Cleanup calls; asyncio's may raise OSError from selector.modify() on
    the stale key the closed fd left behind."""
    for fn in fns:
        try:
            fn()
        except OSError:
            pass


async def until(cond):
    """Waits up to WAIT seconds for cond() to hold."""
    for _ in range(int(WAIT / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)


def check_stale(op, allowed=b""):
    """A stale operation ends with an OSError or not at all: never with
    a result (which would be someone else's data)."""
    if not op.done():
        op.cancel()
        return
    if op.cancelled():
        return
    exc = op.exception()
    assert isinstance(exc, OSError), (op, exc)


# ---- sock_* operations ----

@pytest.mark.parametrize("sub", [False, True], ids=["socket", "subclass"])
@pytest.mark.parametrize("kind", ["recv", "recv_into", "recvfrom",
                                  "recvfrom_into"])
def test_sock_read_ops(loop, impl, sub, kind):
    async def start(s):
        if kind == "recv":
            return await loop.sock_recv(s, 100)
        if kind == "recv_into":
            buf = bytearray(100)
            n = await loop.sock_recv_into(s, buf)
            return bytes(buf[:n])
        if kind == "recvfrom":
            return (await loop.sock_recvfrom(s, 100))[0]
        buf = bytearray(100)
        n, _ = await loop.sock_recvfrom_into(s, buf)
        return bytes(buf[:n])

    async def main():
        a, b = make_pair(sub)
        old = asyncio.ensure_future(start(a))
        await asyncio.sleep(0.01)
        fd = a.fileno()
        a.close()
        c, d = pair_on(fd)
        with b, c, d:
            new = asyncio.ensure_future(start(c))
            await asyncio.sleep(0.01)
            d.send(b"for the new socket")
            await settle(old, new)
            check_stale(old)
            if impl == "fastloop":
                assert new.done() and new.result() == b"for the new socket"
            else:
                new.cancel()

    run(loop, main())


@pytest.mark.parametrize("sub", [False, True], ids=["socket", "subclass"])
def test_sock_sendall(loop, impl, sub):
    async def main():
        a, b = make_pair(sub)
        fill(a)
        old = asyncio.ensure_future(loop.sock_sendall(a, b"A" * 200000))
        await asyncio.sleep(0.01)
        assert not old.done()
        fd = a.fileno()
        a.close()
        c, d = pair_on(fd)
        with b, c, d:
            payload = b"C" * 200000
            new = asyncio.ensure_future(loop.sock_sendall(c, payload))
            got = b""
            for _ in range(int(WAIT / 0.01)):
                await asyncio.sleep(0.01)
                got += drain(d)
            got += drain(d)
            assert set(got) <= {ord("C")}, "the old data reached the new peer"
            check_stale(old)
            if impl == "fastloop":
                assert new.done() and got == payload
            else:
                new.cancel()

    run(loop, main())


@pytest.mark.parametrize("sub", [False, True], ids=["socket", "subclass"])
def test_sock_sendfile(loop, impl, sub):
    async def main():
        a, b = make_pair(sub)
        fill(a)
        with tempfile.TemporaryFile() as f:
            f.write(b"F" * (1 << 20))
            f.flush()
            f.seek(0)
            old = asyncio.ensure_future(loop.sock_sendfile(a, f))
            await asyncio.sleep(0.01)
            assert not old.done()
            fd = a.fileno()
            a.close()
            c, d = pair_on(fd)
            with b, c, d:
                payload = b"C" * 200000
                new = asyncio.ensure_future(loop.sock_sendall(c, payload))
                got = b""
                for _ in range(int(WAIT / 0.01)):
                    await asyncio.sleep(0.01)
                    got += drain(d)
                got += drain(d)
                assert b"F" not in got, "the file reached the new peer"
                check_stale(old)
                if impl == "fastloop":
                    assert new.done() and got == payload
                else:
                    new.cancel()

    run(loop, main())


def _listener(sub):
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sub:
        ls = SockSub(socket.AF_UNIX, socket.SOCK_STREAM, fileno=ls.detach())
    ls.setblocking(False)
    return ls


@pytest.mark.parametrize("sub", [False, True], ids=["socket", "subclass"])
def test_sock_accept(loop, impl, sub, tmp_path):
    async def main():
        ls = _listener(sub)
        ls.bind(str(tmp_path / "old"))
        ls.listen()
        old = asyncio.ensure_future(loop.sock_accept(ls))
        await asyncio.sleep(0.01)
        fd = ls.fileno()
        ls.close()
        ls2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        assert ls2.fileno() == fd
        ls2.setblocking(False)
        ls2.bind(str(tmp_path / "new"))
        ls2.listen()
        with ls2:
            new = asyncio.ensure_future(loop.sock_accept(ls2))
            await asyncio.sleep(0.01)
            cl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            cl.connect(str(tmp_path / "new"))
            with cl:
                await settle(old, new)
                check_stale(old)
                if impl == "fastloop":
                    conn, _ = new.result()
                    conn.close()
                else:
                    new.cancel()
                    conn, _ = ls2.accept()      # it is still there
                    conn.close()

    run(loop, main())


@pytest.mark.parametrize("sub", [False, True], ids=["socket", "subclass"])
def test_sock_connect(loop, impl, sub):
    async def main():
        # A listener whose backlog is full: the next connect stays pending.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        addr = ls.getsockname()
        fillers = []
        a = None
        with ls:
            for _ in range(8):
                s = socket.socket()
                s.setblocking(False)
                if sub:
                    s = SockSub(socket.AF_INET, socket.SOCK_STREAM,
                                fileno=s.detach())
                    s.setblocking(False)
                old = asyncio.ensure_future(loop.sock_connect(s, addr))
                await asyncio.sleep(0.02)
                if not old.done():
                    a = s
                    break
                fillers.append(s)
            else:
                pytest.skip("could not get a pending connect")
            fd = a.fileno()
            a.close()
            c, d = pair_on(fd)
            with c, d:
                payload = b"C" * 200000
                new = asyncio.ensure_future(loop.sock_sendall(c, payload))
                got = b""
                for _ in range(int(WAIT / 0.01)):
                    await asyncio.sleep(0.01)
                    got += drain(d)
                check_stale(old)
                if impl == "fastloop":
                    got += drain(d)
                    assert new.done() and got == payload
                else:
                    new.cancel()
            for s in fillers:
                s.close()

    run(loop, main())


# ---- transports ----

class Rec(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.lost = loop.create_future()
        self.made = loop.create_future()

    def connection_made(self, tr):
        self.made.set_result(tr)

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def check_stale_transport(proto):
    assert bytes(proto.data) == b"", "the old transport read the new socket"
    if proto.lost.done():
        exc = proto.lost.result()
        assert exc is None or isinstance(exc, OSError), exc


def test_stream_transport_read(loop, impl):
    async def main():
        a, b = make_pair(False)
        tr, pr = await loop.connect_accepted_socket(lambda: Rec(loop), a)
        await pr.made
        fd = a.fileno()
        a.close()
        c, d = pair_on(fd)
        with b, d:
            # (3.12+: a socket transport on the number is refused while the
            # old transport owns it; a pipe transport is not.)
            tr2, pr2 = await loop.connect_read_pipe(lambda: Rec(loop), c)
            d.send(b"for the new one")
            await until(lambda: pr2.data)
            check_stale_transport(pr)
            if impl == "fastloop":
                assert bytes(pr2.data) == b"for the new one"
            quietly(tr2.close, tr.abort)
            await asyncio.sleep(0.01)

    run(loop, main())


def test_stream_transport_queued_write(loop, impl):
    async def main():
        a, b = make_pair(False)
        tr, pr = await loop.connect_accepted_socket(lambda: Rec(loop), a)
        await pr.made
        tr.write(b"A" * (1 << 20))
        assert tr.get_write_buffer_size() > 0
        fd = a.fileno()
        a.close()
        c, d = pair_on(fd)
        with b, d:
            tr2, pr2 = await loop.connect_write_pipe(lambda: Rec(loop), c)
            payload = b"C" * 200000
            tr2.write(payload)
            got = b""
            for _ in range(int(WAIT / 0.01)):
                await asyncio.sleep(0.01)
                got += drain(d)
            got += drain(d)
            assert set(got) <= {ord("C")}, "the old data reached the new peer"
            if impl == "fastloop":
                assert got == payload
                assert isinstance(await pr.lost, OSError)
            quietly(tr2.abort, tr.abort)
            await asyncio.sleep(0.01)

    run(loop, main())


def test_stream_transport_sendfile(loop, impl):
    async def main():
        a, b = make_pair(False)
        fill(a)
        tr, pr = await loop.connect_accepted_socket(lambda: Rec(loop), a)
        await pr.made
        with tempfile.TemporaryFile() as f:
            f.write(b"F" * (1 << 20))
            f.flush()
            f.seek(0)
            old = asyncio.ensure_future(loop.sendfile(tr, f))
            await asyncio.sleep(0.02)
            assert not old.done()
            fd = a.fileno()
            a.close()
            c, d = pair_on(fd)
            with b, c, d:
                payload = b"C" * 200000
                new = asyncio.ensure_future(loop.sock_sendall(c, payload))
                got = b""
                for _ in range(int(WAIT / 0.01)):
                    await asyncio.sleep(0.01)
                    got += drain(d)
                got += drain(d)
                assert b"F" not in got, "the file reached the new peer"
                check_stale(old)
                if impl == "fastloop":
                    assert new.done() and got == payload
                else:
                    new.cancel()
                quietly(tr.abort)
                await asyncio.sleep(0.01)

    run(loop, main())


class DRec(asyncio.DatagramProtocol):
    def __init__(self, loop):
        self.got = []
        self.errors = []
        self.lost = loop.create_future()

    def datagram_received(self, data, addr):
        self.got.append(data)

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def test_datagram_transport_read(loop, impl):
    async def main():
        a, b = make_pair(False, type=socket.SOCK_DGRAM)
        tr, pr = await loop.create_datagram_endpoint(lambda: DRec(loop),
                                                     sock=a)
        await asyncio.sleep(0.01)
        fd = a.fileno()
        a.close()
        c, d = pair_on(fd, socket.SOCK_DGRAM)
        with b, d:
            tr2, pr2 = await loop.connect_read_pipe(lambda: Rec(loop), c)
            d.send(b"for the new one")
            await until(lambda: pr2.data)
            assert pr.got == [], "the old transport read the new socket"
            if impl == "fastloop":
                assert bytes(pr2.data) == b"for the new one"
                # It stops polling a number that is not its own (an
                # error_received() per poll would spin) and fails.
                assert isinstance(await asyncio.wait_for(pr.lost, 5), OSError)
                assert len(pr.errors) <= 1, pr.errors
            quietly(tr2.close, tr.abort)
            await asyncio.sleep(0.01)

    run(loop, main())


def test_datagram_transport_buffered_send(loop, impl, tmp_path):
    async def main():
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(str(tmp_path / "rx"))
        rx.setblocking(False)
        a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setblocking(False)
        tr, pr = await loop.create_datagram_endpoint(lambda: DRec(loop),
                                                     sock=a)
        await asyncio.sleep(0.01)
        for _ in range(5000):       # until the receiver's queue is full
            tr.sendto(b"A" * 100, str(tmp_path / "rx"))
            if tr.get_write_buffer_size():
                break
        assert tr.get_write_buffer_size() > 0
        fd = a.fileno()
        a.close()
        c, d = pair_on(fd, socket.SOCK_DGRAM)
        with rx, d:
            drain(rx)
            tr2, pr2 = await loop.connect_write_pipe(lambda: Rec(loop), c)
            tr2.write(b"C" * 100)
            got = []
            for _ in range(int(WAIT / 0.01)):
                await asyncio.sleep(0.01)
                try:
                    while True:
                        got.append(d.recv(1000))
                except BlockingIOError:
                    pass
            assert all(g == b"C" * 100 for g in got), "old datagrams, new peer"
            if impl == "fastloop":
                assert got == [b"C" * 100]
            quietly(tr2.abort, tr.abort)
            await asyncio.sleep(0.01)

    run(loop, main())


def test_read_pipe_transport(loop, impl):
    async def main():
        r, w = os.pipe()
        rf = open(r, "rb", buffering=0)
        tr, pr = await loop.connect_read_pipe(lambda: Rec(loop), rf)
        await pr.made
        r2, w2 = os.pipe()
        rf.close()
        os.dup2(r2, r)      # a new pipe's read end on the old number
        os.close(r2)
        r2 = r
        rf2 = open(r2, "rb", buffering=0)
        try:
            tr2, pr2 = await loop.connect_read_pipe(lambda: Rec(loop), rf2)
            os.write(w2, b"for the new pipe")
            await until(lambda: pr2.data)
            check_stale_transport(pr)
            if impl == "fastloop":
                assert bytes(pr2.data) == b"for the new pipe"
            quietly(tr2.close, tr.close)
            await asyncio.sleep(0.01)
        finally:
            os.close(w)
            os.close(w2)

    run(loop, main())


def test_write_pipe_transport(loop, impl):
    async def main():
        r, w = os.pipe()
        wf = open(w, "wb", buffering=0)
        tr, pr = await loop.connect_write_pipe(lambda: Rec(loop), wf)
        await pr.made
        tr.write(b"A" * (1 << 20))          # more than the pipe holds
        assert tr.get_write_buffer_size() > 0
        r2, w2 = os.pipe()
        wf.close()
        os.dup2(w2, w)      # a new pipe's write end on the old number
        os.close(w2)
        w2 = w
        os.set_blocking(r2, False)
        wf2 = open(w2, "wb", buffering=0)
        try:
            try:
                tr2, pr2 = await loop.connect_write_pipe(lambda: Rec(loop),
                                                         wf2)
            except OSError:
                # asyncio: its "reader trick" add_reader() runs into the
                # stale selector key (ENOENT from epoll_ctl MOD).
                assert impl == "asyncio"
                wf2.close()
                return
            tr2.write(b"C" * 1000)
            got = b""
            for _ in range(int(WAIT / 0.01)):
                await asyncio.sleep(0.01)
                try:
                    got += os.read(r2, 1 << 20)
                except BlockingIOError:
                    pass
            assert set(got) <= {ord("C")}, "the old data reached the new pipe"
            if impl == "fastloop":
                assert got == b"C" * 1000
            quietly(tr2.abort, tr.abort)
            await asyncio.sleep(0.01)
        finally:
            os.close(r)
            os.close(r2)

    run(loop, main())


def test_server_listener(loop, impl, tmp_path, errors):
    async def main():
        old_conns = []
        new_conns = []
        ls = _listener(False)
        ls.bind(str(tmp_path / "old"))
        srv = await loop.create_unix_server(
            lambda: old_conns.append(1) or asyncio.Protocol(), sock=ls)
        await asyncio.sleep(0.01)
        fd = ls.fileno()
        ls.close()      # behind the server's back
        ls2 = _listener(False)
        assert ls2.fileno() == fd
        ls2.bind(str(tmp_path / "new"))
        srv2 = await loop.create_unix_server(
            lambda: new_conns.append(1) or asyncio.Protocol(), sock=ls2)
        cl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cl.connect(str(tmp_path / "new"))
        with cl:
            for _ in range(int(WAIT / 0.01)):
                await asyncio.sleep(0.01)
                if new_conns:
                    break
            assert old_conns == [], "the old server accepted a connection"
            if impl == "fastloop":
                assert new_conns == [1]
        srv2.close()
        try:
            srv.close()
        except ValueError:
            # asyncio: remove_reader(sock.fileno()) of the closed socket
            assert impl == "asyncio"
        except OSError:
            # 3.13: _stop_serving() asks the closed socket its name (the
            # Unix socket cleanup); fastloop's is asyncio's code.
            pass
        await asyncio.sleep(0.01)

    run(loop, main())
