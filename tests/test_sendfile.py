"""loop.sendfile(): parity with asyncio's selector loop.

Every test runs on asyncio's loop and on fastloop: the native path
(os.sendfile on the transport's socket, writes refused meanwhile), the
fallback (SSL transports, or forced), asyncio's errors, peers that go away,
flow control with a slow reader, and no fd left behind.
"""
import asyncio
import os
import socket
import tempfile

import pytest

from asyncio import constants
from test.test_asyncio import utils as test_utils

from fl_support import run


def _open_fds(loop):
    """Open fds, once the loop has run (it makes its own fds lazily)."""
    loop.run_until_complete(asyncio.sleep(0))
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def datafile():
    """A 1 MB regular file and its contents."""
    data = os.urandom(1024 * 1024)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        yield f, data


class Sink(asyncio.Protocol):
    """Server side: collects everything; can read slowly or hang up."""

    def __init__(self, loop, close_after=0, slow=False):
        self.loop = loop
        self.data = bytearray()
        self.close_after = close_after
        self.slow = slow
        self.transport = None
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.close_after and len(self.data) >= self.close_after:
            self.transport.close()
        elif self.slow:
            self.transport.pause_reading()
            self.loop.call_later(0.001, self._resume)

    def _resume(self):
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)


class Source(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def _connect(loop, *, ssl=False, close_after=0, slow=False,
                   sndbuf=None):
    """(server protocol, client protocol, server): a connected pair."""
    srv_proto = Sink(loop, close_after, slow)
    server = await loop.create_server(
        lambda: srv_proto, "127.0.0.1", 0,
        ssl=test_utils.simple_server_sslcontext() if ssl else None)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket()
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    kw = {}
    if ssl:
        kw = dict(ssl=test_utils.simple_client_sslcontext(),
                  server_hostname="")
    _, cli_proto = await loop.create_connection(
        lambda: Source(loop), sock=sock, **kw)
    return srv_proto, cli_proto, server


async def _finish(srv_proto, cli_proto, server):
    cli_proto.transport.close()
    await cli_proto.lost
    await srv_proto.done
    server.close()
    await server.wait_closed()


def _no_fallback(loop):
    async def fallback(*args):
        raise AssertionError("the native path was expected")
    loop._sendfile_fallback = fallback


def test_sendfile_native(loop, datafile):
    f, data = datafile
    _no_fallback(loop)
    fds = _open_fds(loop)

    async def main():
        srv, cli, server = await _connect(loop)
        ret = await loop.sendfile(cli.transport, f)
        assert cli.transport.is_reading()     # resumed after the transfer
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=20)
    assert ret == len(data)
    assert got == data
    assert f.tell() == len(data)
    assert _open_fds(loop) == fds


def test_sendfile_offset_count(loop, datafile):
    f, data = datafile

    async def main():
        srv, cli, server = await _connect(loop)
        ret = await loop.sendfile(cli.transport, f, 1000, 5000)
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=20)
    assert ret == 5000
    assert got == data[1000:6000]
    assert f.tell() == 6000


def test_sendfile_partial_file(loop, datafile):
    """count beyond the end of the file: what is there, and no more."""
    f, data = datafile
    offset = len(data) - 777

    async def main():
        srv, cli, server = await _connect(loop)
        ret = await loop.sendfile(cli.transport, f, offset, 100_000)
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=20)
    assert ret == 777
    assert got == data[offset:]
    assert f.tell() == len(data)


def test_sendfile_empty_file(loop):
    async def main():
        srv, cli, server = await _connect(loop)
        with tempfile.TemporaryFile() as f:
            ret = await loop.sendfile(cli.transport, f)
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    assert run(loop, main()) == (0, b"")


def test_sendfile_pre_and_post_data(loop, datafile):
    f, data = datafile

    async def main():
        srv, cli, server = await _connect(loop)
        cli.transport.write(b"HEAD" * 50_000)   # some of it stays queued
        ret = await loop.sendfile(cli.transport, f)
        cli.transport.write(b"TAIL")
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=20)
    assert ret == len(data)
    assert got == b"HEAD" * 50_000 + data + b"TAIL"


def test_sendfile_refuses_write_meanwhile(loop, datafile):
    f, data = datafile

    async def main():
        srv, cli, server = await _connect(loop, slow=True, sndbuf=4096)
        task = asyncio.ensure_future(loop.sendfile(cli.transport, f))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            cli.transport.write(b"x")
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            cli.transport.writelines([b"x"])
        srv.slow = False
        srv.transport.resume_reading()
        ret = await task
        cli.transport.write(b"after")         # allowed again
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=20)
    assert ret == len(data)
    assert got == data + b"after"


def test_sendfile_closing_transport(loop, datafile):
    f, _ = datafile

    async def main():
        srv, cli, server = await _connect(loop)
        cli.transport.close()
        with pytest.raises(RuntimeError, match="is closing"):
            await loop.sendfile(cli.transport, f)
        await _finish(srv, cli, server)

    run(loop, main())
    assert f.tell() == 0


def test_sendfile_not_supported(loop, datafile):
    f, _ = datafile

    async def main():
        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            with pytest.raises(RuntimeError, match="not supported"):
                await loop.sendfile(tr, f)
        finally:
            tr.close()
            await asyncio.sleep(0)

    run(loop, main())
    assert f.tell() == 0


def test_sendfile_no_fallback_for_fallback_transport(loop, datafile):
    f, _ = datafile

    async def main():
        srv, cli, server = await _connect(loop)
        tr = cli.transport
        tr._sendfile_compatible = constants._SendfileMode.FALLBACK
        try:
            with pytest.raises(RuntimeError, match="fallback is disabled"):
                await loop.sendfile(tr, f, fallback=False)
        finally:
            del tr._sendfile_compatible
        await _finish(srv, cli, server)

    run(loop, main())


def test_sendfile_non_regular_file_falls_back(loop):
    """No fileno(): the native path says so, the fallback sends it."""
    import io
    payload = os.urandom(100_000)

    async def main():
        srv, cli, server = await _connect(loop)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(cli.transport, io.BytesIO(payload),
                                fallback=False)
        ret = await loop.sendfile(cli.transport, io.BytesIO(payload))
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    assert run(loop, main(), timeout=20) == (len(payload), payload)


def test_sendfile_ssl_uses_fallback(loop, datafile):
    f, data = datafile
    fds = _open_fds(loop)

    async def main():
        srv, cli, server = await _connect(loop, ssl=True)
        with pytest.raises(RuntimeError, match="fallback is disabled"):
            await loop.sendfile(cli.transport, f, fallback=False)
        cli.transport.write(b"pre")
        ret = await loop.sendfile(cli.transport, f, 10, 300_000)
        cli.transport.write(b"post")
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=30)
    assert ret == 300_000
    assert got == b"pre" + data[10:300_010] + b"post"
    assert f.tell() == 300_010
    assert _open_fds(loop) == fds


def test_sendfile_peer_closes_in_the_middle(loop):
    data = os.urandom(16 * 1024 * 1024)
    fds = _open_fds(loop)

    async def main():
        srv, cli, server = await _connect(loop, close_after=1024,
                                          sndbuf=4096)
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.seek(0)
            with pytest.raises(ConnectionError):
                await loop.sendfile(cli.transport, f)
            pos = f.tell()
        await srv.done
        await cli.lost
        assert cli.transport.is_closing()
        server.close()
        await server.wait_closed()
        return pos, len(srv.data)

    pos, received = run(loop, main(), timeout=20)
    assert 1024 <= received < len(data)
    assert 1024 <= pos < len(data)
    assert _open_fds(loop) == fds


def test_sendfile_peer_closes_after_receiving(loop, datafile):
    f, data = datafile

    async def main():
        srv, cli, server = await _connect(loop, close_after=len(data))
        ret = await loop.sendfile(cli.transport, f)
        await srv.done
        await cli.lost
        server.close()
        await server.wait_closed()
        return ret, bytes(srv.data)

    assert run(loop, main(), timeout=20) == (len(data), data)


@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
def test_sendfile_big_file_slow_reader(loop, native):
    """Flow control: the fallback never queues much more than the high
    water mark; the native path queues nothing."""
    data = os.urandom(8 * 1024 * 1024)
    sizes = []

    async def sample(tr):
        while True:
            sizes.append(tr.get_write_buffer_size())
            await asyncio.sleep(0.0005)

    async def main():
        srv, cli, server = await _connect(loop, slow=True)
        tr = cli.transport
        tr.set_write_buffer_limits(high=64 * 1024)
        if not native:
            tr._sendfile_compatible = constants._SendfileMode.FALLBACK
        sampler = asyncio.ensure_future(sample(tr))
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.seek(0)
            ret = await loop.sendfile(tr, f)
        sampler.cancel()
        if not native:
            del tr._sendfile_compatible
        await _finish(srv, cli, server)
        return ret, bytes(srv.data)

    ret, got = run(loop, main(), timeout=60)
    assert ret == len(data)
    assert got == data
    assert sizes
    if native:
        assert max(sizes) == 0
    else:
        assert max(sizes) <= 64 * 1024 + 16384


# ---- fds owned by transports ----

def test_fd_of_stream_transport_refused(loop):
    async def main():
        srv, cli, server = await _connect(loop)
        tr = cli.transport
        sock = tr.get_extra_info("socket")
        fd = sock.fileno()
        for call in (lambda: loop.add_reader(fd, print),
                     lambda: loop.add_writer(fd, print),
                     lambda: loop.remove_reader(fd),
                     lambda: loop.remove_writer(fd)):
            with pytest.raises(RuntimeError,
                               match=f"File descriptor {fd} is used by "
                                     f"transport"):
                call()
        await _finish(srv, cli, server)

    run(loop, main())


def test_fd_of_stream_transport_refused_to_sock_methods(loop):
    async def main():
        srv_proto = Sink(loop)
        server = await loop.create_server(lambda: srv_proto, "127.0.0.1", 0)
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, server.sockets[0].getsockname())
        tr, cli = await loop.create_connection(lambda: Source(loop),
                                               sock=sock)
        fd = sock.fileno()
        # Nothing to read: sock_recv would have to wait on the fd.
        with pytest.raises(RuntimeError, match=f"File descriptor {fd} is "
                                               f"used by transport"):
            await loop.sock_recv(sock, 10)
        with pytest.raises(RuntimeError, match="is used by transport"):
            await loop.sock_recv_into(sock, bytearray(10))
        # After sendfile the fd belongs to the transport again.
        with tempfile.TemporaryFile() as f:
            f.write(b"x" * 1000)
            f.seek(0)
            assert await loop.sendfile(tr, f) == 1000
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, print)
        # A closing transport no longer owns it.
        tr.close()
        loop.add_reader(fd, print)
        assert loop.remove_reader(fd)
        await cli.lost
        await srv_proto.done
        server.close()
        await server.wait_closed()
        # The fd number, reused, is free for anyone.
        a, b = socket.socketpair()
        try:
            for s in (a, b):
                loop.add_reader(s.fileno(), print)
                assert loop.remove_reader(s.fileno())
        finally:
            a.close()
            b.close()

    run(loop, main())


def test_fd_of_datagram_transport_refused(loop):
    async def main():
        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        sock = tr.get_extra_info("socket")
        fd = sock.fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_writer(fd)
        tr.close()
        await asyncio.sleep(0)
        a, b = socket.socketpair()
        try:
            for s in (a, b):
                loop.add_writer(s.fileno(), print)
                assert loop.remove_writer(s.fileno())
        finally:
            a.close()
            b.close()

    run(loop, main())


def test_fd_of_server_connection_refused(loop):
    """Accepted connections own their fds too."""
    async def main():
        got = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                got.set_result(transport)

        server = await loop.create_server(P, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(
            *server.sockets[0].getsockname())
        tr = await got
        fd = tr.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_writer(fd, print)
        tr.close()
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())
