"""Stream transports: TCP and Unix connections, on asyncio's loop and fastloop."""
import asyncio
import contextvars
import errno
import gc
import os
import socket
import sys

import pytest

from fl_support import Recorder, run


def open_fds():
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class BufRecorder(asyncio.BufferedProtocol):
    def __init__(self, loop, echo=False, size=1024):
        self.loop = loop
        self.echo = echo
        self.buf = bytearray(size)
        self.data = bytearray()
        self.lost = loop.create_future()
        self.sizes = []

    def connection_made(self, tr):
        self.transport = tr

    def get_buffer(self, sizehint):
        self.sizes.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        chunk = bytes(self.buf[:nbytes])
        self.data += chunk
        if self.echo:
            self.transport.write(chunk)

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def echo_server(loop, proto_cls=Recorder, **kw):
    protos = []

    def factory():
        p = proto_cls(loop, echo=True)
        protos.append(p)
        return p

    srv = await loop.create_server(factory, "127.0.0.1", 0, **kw)
    return srv, srv.sockets[0].getsockname(), protos


async def read_exactly(loop, proto, n):
    while len(proto.data) < n:
        await asyncio.sleep(0.001)
    return bytes(proto.data)


@pytest.mark.parametrize("server_proto", [Recorder, BufRecorder])
@pytest.mark.parametrize("client_proto", [Recorder, BufRecorder])
def test_echo_round_trip(loop, server_proto, client_proto):
    async def main():
        srv, addr, protos = await echo_server(loop, server_proto)
        tr, pr = await loop.create_connection(lambda: client_proto(loop), *addr)
        assert isinstance(tr, asyncio.Transport)
        payload = bytes(range(256)) * 40
        tr.write(payload)
        got = await asyncio.wait_for(read_exactly(loop, pr, len(payload)), 5)
        assert got == payload
        if client_proto is BufRecorder:
            assert pr.sizes and pr.sizes[0] == -1
        tr.close()
        assert tr.is_closing()
        assert await pr.lost is None
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_extra_info(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_INET
        assert tr.get_extra_info("peername") == addr
        assert tr.get_extra_info("sockname") == sock.getsockname()
        assert tr.get_extra_info("nope", 42) == 42
        assert tr.get_extra_info("sslcontext") is None
        assert tr.get_protocol() is pr
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        while not protos:
            await asyncio.sleep(0.001)
        await protos[0].made
        assert protos[0].transport.get_extra_info("peername") == sock.getsockname()
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_connection_callbacks_order_and_once(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        tr.close()
        tr.close()
        tr.abort()
        await pr.lost
        await asyncio.sleep(0.01)
        assert pr.events == ["made", "lost"]
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_protocol_callbacks_run_in_transport_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    class P(Recorder):
        def connection_made(self, tr):
            seen.append(("made", var.get()))
            super().connection_made(tr)

        def data_received(self, data):
            seen.append(("data", var.get()))
            super().data_received(data)

        def connection_lost(self, exc):
            seen.append(("lost", var.get()))
            super().connection_lost(exc)

    async def main():
        srv, addr, protos = await echo_server(loop)
        var.set("client")
        tr, pr = await loop.create_connection(lambda: P(loop), *addr)
        var.set("changed")
        tr.write(b"x")
        await read_exactly(loop, pr, 1)
        tr.close()
        await pr.lost
        # connection_lost: asyncio runs it in the context of whoever called
        # close(); fastloop in the transport's, so only the rest is compared.
        assert seen[:2] == [("made", "client"), ("data", "client")]
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_write_type_errors_and_after_eof(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        wording = ("bytes, bytearray, or memoryview object"
                   if sys.version_info >= (3, 14) else "bytes-like object")
        with pytest.raises(TypeError, match=f"{wording}, not 'str'"):
            tr.write("text")
        tr.write(b"")
        tr.write(bytearray(b"ab"))
        tr.write(memoryview(b"cd"))
        tr.writelines([b"ef", bytearray(b"gh"), memoryview(b"ij")])
        await asyncio.wait_for(read_exactly(loop, pr, 10), 5)
        assert bytes(pr.data) == b"abcdefghij"
        assert tr.can_write_eof()
        tr.write_eof()
        tr.write_eof()
        with pytest.raises(RuntimeError, match="after write_eof"):
            tr.write(b"x")
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_half_close(loop):
    """write_eof from the client: the server sees eof_received, keeps the
    connection open (returns True) and can still answer."""
    async def main():
        got = loop.create_future()

        class Server(Recorder):
            def eof_received(self):
                self.transport.write(b"reply:" + bytes(self.data))
                self.transport.close()
                return True

        srv = await loop.create_server(lambda: Server(loop), "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        pr.eof_result = True
        tr.write(b"question")
        tr.write_eof()
        await asyncio.wait_for(pr.eof, 5)
        assert bytes(pr.data) == b"reply:question"
        assert not tr.is_closing()      # eof_received returned True
        tr.close()
        await pr.lost
        assert pr.events == ["made", "eof", "lost"]
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_eof_received_false_closes(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        while not protos:
            await asyncio.sleep(0.001)
        await protos[0].made
        protos[0].transport.close()
        assert await asyncio.wait_for(pr.lost, 5) is None
        assert pr.events == ["made", "eof", "lost"]
        assert tr.is_closing()
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_flow_control_big_write_slow_reader(loop):
    """A big write to a reader that pauses: pause_writing at the high-water
    mark, resume_writing once drained; memory stays the queued bytes."""
    async def main():
        server_protos = []

        class Slow(Recorder):
            def connection_made(self, tr):
                super().connection_made(tr)
                tr.pause_reading()
                assert not tr.is_reading()
                server_protos.append(self)

        srv = await loop.create_server(lambda: Slow(loop), "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        tr.set_write_buffer_limits(high=64 * 1024)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        chunk = b"x" * (1024 * 1024)
        total = 0
        for _ in range(16):
            tr.write(chunk)
            total += len(chunk)
            if "pause" in pr.events:
                break
        assert "pause" in pr.events
        assert tr.get_write_buffer_size() > 0
        while not server_protos:
            await asyncio.sleep(0.001)
        s = server_protos[0]
        s.transport.resume_reading()
        assert s.transport.is_reading()
        await asyncio.wait_for(read_exactly(loop, s, total), 10)
        for _ in range(100):
            if "resume" in pr.events:
                break
            await asyncio.sleep(0.01)
        assert pr.events.count("pause") == 1
        assert pr.events[-1] == "resume"
        assert tr.get_write_buffer_size() == 0
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_set_write_buffer_limits_invalid(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        with pytest.raises(ValueError, match="must be >= low"):
            tr.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=-1)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits(high=0)
        assert tr.get_write_buffer_limits() == (0, 0)
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_pause_resume_reading(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        assert tr.is_reading()
        tr.pause_reading()
        tr.pause_reading()
        assert not tr.is_reading()
        tr.write(b"ping")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        tr.resume_reading()
        tr.resume_reading()
        assert tr.is_reading()
        await asyncio.wait_for(read_exactly(loop, pr, 4), 5)
        tr.close()
        assert not tr.is_reading()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_abort_drops_buffer(loop):
    async def main():
        srv = await loop.create_server(lambda: Recorder(loop), "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        tr.write(b"x" * (8 * 1024 * 1024))
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        assert tr.is_closing()
        assert await pr.lost is None
        assert pr.events.count("lost") == 1
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_close_flushes_buffer_first(loop):
    async def main():
        srv, addr, protos = await echo_server(loop, Recorder)
        received = []

        class Sink(Recorder):
            def data_received(self, data):
                received.append(len(data))

        srv2 = await loop.create_server(lambda: Sink(loop), "127.0.0.1", 0)
        addr2 = srv2.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr2)
        size = 4 * 1024 * 1024
        tr.write(b"y" * size)
        tr.close()
        assert await pr.lost is None
        for _ in range(500):
            if sum(received) == size:
                break
            await asyncio.sleep(0.01)
        assert sum(received) == size        # nothing acknowledged is lost
        for s in (srv, srv2):
            s.close()
            await s.wait_closed()
    run(loop, main())


def test_write_to_closing_transport_is_dropped(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        tr.close()
        for _ in range(10):
            tr.write(b"dropped")        # silently dropped, then logged
        await pr.lost
        tr.write(b"after lost")
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_peer_reset_mid_write(loop):
    """The peer resets while we write: connection_lost gets the error,
    once; no exception reaches the handler (OSErrors are only logged in
    debug mode)."""
    errors = []
    loop.set_exception_handler(lambda l, ctx: errors.append(ctx))

    async def main():
        class Resetter(Recorder):
            def connection_made(self, tr):
                super().connection_made(tr)
                sock = tr.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                b"\x01\x00\x00\x00\x00\x00\x00\x00")
                tr.abort()

        srv = await loop.create_server(lambda: Resetter(loop), "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        for _ in range(200):
            if pr.lost.done():
                break
            tr.write(b"z" * 65536)
            await asyncio.sleep(0.005)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert exc is None or isinstance(exc, (ConnectionResetError,
                                               BrokenPipeError))
        assert pr.events.count("lost") == 1
        srv.close()
        await srv.wait_closed()
    run(loop, main())
    assert errors == []


def test_econnrefused(loop):
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()
        s.close()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, *addr)
    run(loop, main())   # warm up lazily created fds
    before = open_fds()
    run(loop, main())
    gc.collect()
    assert open_fds() == before


def test_invalid_arguments(loop):
    async def main():
        with pytest.raises(ValueError):
            await loop.create_connection(asyncio.Protocol)
        with pytest.raises(ValueError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1,
                                         sock=socket.socket())
        with pytest.raises(ValueError, match="server_hostname"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1,
                                         server_hostname="x")
        with pytest.raises(OSError):
            await loop.create_connection(asyncio.Protocol, "256.1.1.1", 1)
        with pytest.raises(TypeError):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                     ssl=True)
    run(loop, main())


def test_sock_argument_and_fd_count(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        for _ in range(20):
            sock = socket.create_connection(addr)
            sock.setblocking(False)
            tr, pr = await loop.create_connection(lambda: Recorder(loop),
                                                  sock=sock)
            tr.write(b"abc")
            await read_exactly(loop, pr, 3)
            tr.close()
            await pr.lost
            assert sock.fileno() == -1      # the transport closed it
        srv.close()
        await srv.wait_closed()
        # Before 3.12, wait_closed() does not wait for the connections: the
        # server side of the last one may not have seen its EOF yet.
        await asyncio.gather(*(p.lost for p in protos))
    run(loop, main())   # warm up lazily created fds
    before = open_fds()
    run(loop, main())
    gc.collect()
    assert open_fds() == before


def test_epipe_after_peer_closed(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        b.close()
        for _ in range(100):
            if pr.lost.done():
                break
            tr.write(b"q" * 1000)
            await asyncio.sleep(0.005)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert exc is None or isinstance(exc, (BrokenPipeError,
                                               ConnectionResetError))
    run(loop, main())


def test_data_received_error_is_reported_and_closes(loop):
    errors = []
    loop.set_exception_handler(lambda l, ctx: errors.append(ctx))

    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError

    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Bad(loop), *addr)
        tr.write(b"boom")
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, ZeroDivisionError)
        srv.close()
        await srv.wait_closed()
    run(loop, main())
    assert len(errors) == 1
    assert errors[0]["message"] == \
        "Fatal error: protocol.data_received() call failed."
    assert isinstance(errors[0]["exception"], ZeroDivisionError)


def test_empty_get_buffer_is_fatal(loop):
    errors = []
    loop.set_exception_handler(lambda l, ctx: errors.append(ctx))

    class Empty(BufRecorder):
        def get_buffer(self, n):
            return bytearray()

    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Empty(loop), *addr)
        tr.write(b"boom")
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, RuntimeError)
        srv.close()
        await srv.wait_closed()
    run(loop, main())
    assert errors[0]["message"] == \
        "Fatal error: protocol.get_buffer() call failed."


def test_unix_connection(loop, tmp_path):
    path = str(tmp_path / "sock")

    async def main():
        protos = []

        def factory():
            protos.append(Recorder(loop, echo=True))
            return protos[-1]

        srv = await loop.create_unix_server(factory, path)
        tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), path)
        assert tr.get_extra_info("peername") == path
        tr.write(b"unix!")
        await asyncio.wait_for(read_exactly(loop, pr, 5), 5)
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_unix_abstract_namespace(loop):
    name = f"\0fastloop-test-{os.getpid()}"

    async def main():
        srv = await loop.create_unix_server(lambda: Recorder(loop, echo=True),
                                            name)
        tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), name)
        tr.write(b"abstract")
        await asyncio.wait_for(read_exactly(loop, pr, 8), 5)
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_streams_open_connection(loop):
    async def main():
        async def handle(reader, writer):
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        async with srv:
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(b"hello streams\n")
            await writer.drain()
            assert await reader.readline() == b"HELLO STREAMS\n"
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
    run(loop, main())


def test_streams_unix(loop, tmp_path):
    path = str(tmp_path / "s")

    async def main():
        async def handle(reader, writer):
            writer.write(await reader.readexactly(3))
            await writer.drain()
            writer.close()

        srv = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"abc")
        assert await reader.readexactly(3) == b"abc"
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_unclosed_transport_warns(loop):
    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        srv.close()
        return tr

    tr = run(loop, main())
    loop.close()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del tr
        gc.collect()


def test_transport_weakref_and_attributes(loop):
    import weakref

    async def main():
        srv, addr, protos = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        ref = weakref.ref(tr)
        assert ref() is tr
        tr.custom = 1           # transports take attributes, as asyncio's do
        assert tr.custom == 1
        assert "fd=" in repr(tr)
        tr.close()
        await pr.lost
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_reads_small_big_small_keep_every_byte(loop):
    # fastloop reads small messages through one shared buffer and, once reads
    # run large, straight into the bytes object it hands out: every switch
    # between the two must keep the bytes and their order, and each chunk
    # must be a bytes object of its own (a protocol may keep it).
    async def main():
        a, b = socket.socketpair()
        b.setblocking(False)
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        chunks = []
        pr.data_received = lambda data: chunks.append(data)
        sizes = [100, 300_000, 10, 6000, 1 << 20, 5, 70_000, 1]
        sent = bytearray()
        for i, size in enumerate(sizes):
            block = bytes([i]) * size
            await loop.sock_sendall(b, block)
            sent += block
            while sum(map(len, chunks)) < len(sent):
                await asyncio.sleep(0.001)
        b.close()
        await pr.lost
        assert all(type(c) is bytes for c in chunks)
        assert b"".join(chunks) == sent
        return [len(c) for c in chunks]
    run(loop, main())
