"""Writing on a TLS transport, on asyncio's loop and on fastloop: what
write() and writelines() take, what they refuse and how, the write buffer
against its water marks (pause_writing/resume_writing at the same points as
asyncio's sslproto), writes after close() and abort(), write_eof().

Every byte written is compared with what the peer decrypted.
"""
import asyncio
import logging

import pytest

from fl_support import Recorder, run
from tls_support import (BioConn, RawPeer, client_ctx, close_all, payload,
                         server_ctx, tls_pair)


async def wait_for_bytes(loop, proto, n, timeout=10):
    deadline = loop.time() + timeout
    while len(proto.data) < n and loop.time() < deadline:
        await asyncio.sleep(0.002)


def test_write_types(loop):
    """bytes, bytearray and memoryview (of bytes, of a bytearray, sliced)
    through write() and writelines() (a list, a tuple, a generator); empty
    writes are no-ops."""
    ba = bytearray(b"bytearray|")
    parts = [b"bytes|", ba, memoryview(b"..memoryview|")[2:],
             memoryview(bytearray(b"mv-of-bytearray|"))]

    async def main():
        srv, cli, server = await tls_pair(loop)
        tr = cli.transport
        for p in parts:
            tr.write(p)
        tr.write(b"")
        tr.write(bytearray())
        tr.write(memoryview(b""))
        tr.writelines(parts)
        tr.writelines(tuple(parts))
        tr.writelines(p for p in parts)
        tr.writelines([])
        tr.writelines([b"", b"end"])
        expected = b"".join(bytes(p) for p in parts) * 4 + b"end"
        await wait_for_bytes(loop, srv, len(expected))
        await close_all(server, cli)
        return bytes(srv.data), expected

    got, expected = run(loop, main())
    assert got == expected


def test_write_copies_mutable_data(loop):
    """A bytearray changed right after write() is sent as it was."""
    async def main():
        srv, cli, server = await tls_pair(loop)
        buf = bytearray(b"original")
        cli.transport.write(buf)
        buf[:] = b"CHANGED!"
        cli.transport.writelines([buf])
        buf[:] = b"xxxxxxxx"
        await wait_for_bytes(loop, srv, 16)
        await close_all(server, cli)
        return bytes(srv.data)

    assert run(loop, main()) == b"originalCHANGED!"


@pytest.mark.parametrize("bad", ["text", 1, None, [b"x"], object()])
def test_write_refuses_non_bytes(loop, bad):
    """write() of anything but bytes, bytearray or memoryview raises
    TypeError with asyncio's message and leaves the connection usable."""
    async def main():
        srv, cli, server = await tls_pair(loop)
        with pytest.raises(TypeError) as info:
            cli.transport.write(bad)
        cli.transport.write(b"still fine")
        await wait_for_bytes(loop, srv, 10)
        await close_all(server, cli)
        return str(info.value), bytes(srv.data)

    msg, got = run(loop, main())
    assert msg == f"data: expecting a bytes-like instance, got {type(bad).__name__}"
    assert got == b"still fine"


def test_writelines_not_iterable(loop):
    async def main():
        srv, cli, server = await tls_pair(loop)
        with pytest.raises(TypeError):
            cli.transport.writelines(42)
        cli.transport.write(b"ok")
        await wait_for_bytes(loop, srv, 2)
        await close_all(server, cli)
        return bytes(srv.data)

    assert run(loop, main()) == b"ok"


def _connection_lost_after(loop, misuse):
    """The exception the client's connection_lost() gets after
    misuse(its TLS transport) on a fresh connection."""
    async def main():
        srv, cli, server = await tls_pair(loop)
        misuse(cli.transport)
        exc = await asyncio.wait_for(cli.lost, 5)
        server.close()
        await server.wait_closed()
        return exc

    return run(loop, main())


def test_writelines_of_text_is_a_fatal_error(loop, errors):
    """writelines() does not check its items: asyncio's sslproto queues a
    str, fails to encrypt it, and ends the connection with that TypeError
    (reported as 'Fatal error on SSL protocol'); so does fastloop."""
    exc = _connection_lost_after(loop, lambda tr: tr.writelines(["text"]))
    assert isinstance(exc, TypeError)
    assert [e["message"] for e in errors] == ["Fatal error on SSL protocol"]
    assert errors[0]["exception"] is exc


def _handshake_then_read_on_release(sock, peer):
    """Server: handshake, read nothing until released, then read exactly
    peer.expected bytes."""
    conn = BioConn(sock, server_ctx(), server_side=True)
    conn.handshake()
    peer.release.wait(15)
    return conn.recv_exactly(peer.expected)


class WriteFlowRecorder(Recorder):
    """Records the write buffer size seen by pause_writing/resume_writing."""

    def __init__(self, loop):
        super().__init__(loop)
        self.sizes = {}

    def pause_writing(self):
        super().pause_writing()
        self.sizes.setdefault("pause", self.transport.get_write_buffer_size())

    def resume_writing(self):
        super().resume_writing()
        self.sizes.setdefault("resume", self.transport.get_write_buffer_size())


def test_water_marks_pause_and_resume_points(loop):
    """A peer that reads nothing until told: pause_writing() is called in
    the very write() that takes the buffer to the high-water mark or
    above (not before), resume_writing() once it drained to the low-water
    mark; get_write_buffer_size() says so at each point. All bytes
    arrive."""
    high, low = 200_000, 50_000
    chunk = payload(30_000, b"wm")

    async def main():
        peer = RawPeer(_handshake_then_read_on_release)
        tr, cli = await loop.create_connection(
            lambda: WriteFlowRecorder(loop), *peer.addr, ssl=client_ctx(),
            server_hostname="")
        tr.set_write_buffer_limits(high=high, low=low)
        assert tr.get_write_buffer_limits() == (low, high)
        assert tr.get_write_buffer_size() == 0
        sent = 0
        while "pause" not in cli.events and sent < 2000 * len(chunk):
            before = tr.get_write_buffer_size()
            tr.write(chunk)
            sent += len(chunk)
            after = tr.get_write_buffer_size()
            # pause_writing ran inside this write() exactly when it crossed
            assert ("pause" in cli.events) == (after >= high), (before, after)
            await asyncio.sleep(0)
        assert cli.events == ["made", "pause"]
        peer.expected = sent
        got = await loop.run_in_executor(None, peer.join)
        deadline = loop.time() + 10
        while "resume" not in cli.events and loop.time() < deadline:
            await asyncio.sleep(0.005)
        size_after = tr.get_write_buffer_size()
        tr.abort()
        await asyncio.wait_for(cli.lost, 5)
        return cli, got, sent, size_after

    cli, got, sent, size_after = run(loop, main(), timeout=30)
    assert cli.events[:3] == ["made", "pause", "resume"]
    assert cli.sizes["pause"] >= high
    assert cli.sizes["resume"] <= low
    assert size_after == 0
    assert len(got) == sent
    assert got == chunk * (sent // len(chunk))


def test_set_write_buffer_limits_checks_the_marks_at_once(loop):
    """set_write_buffer_limits() compares the buffer with the new marks
    right away, as asyncio's does: high=0 pauses even an empty buffer
    (0 >= 0), a high mark far above resumes it; marks beyond any C integer
    (10**30) work as asyncio's Python comparisons do."""
    async def main():
        peer = RawPeer(_handshake_then_read_on_release)
        tr, cli = await loop.create_connection(
            lambda: Recorder(loop), *peer.addr, ssl=client_ctx(),
            server_hostname="")
        seen = []
        for high in (0, 10**9, 0, 10**30):
            tr.set_write_buffer_limits(high=high)
            seen.append((tr.get_write_buffer_limits(), list(cli.events)))
        tr.write(b"x" * 1000)
        seen.append(list(cli.events))
        peer.expected = 1000
        got = await loop.run_in_executor(None, peer.join)
        tr.abort()
        await asyncio.wait_for(cli.lost, 5)
        return seen, got

    seen, got = run(loop, main())
    assert seen == [
        ((0, 0), ["made", "pause"]),
        ((10**9 // 4, 10**9), ["made", "pause", "resume"]),
        ((0, 0), ["made", "pause", "resume", "pause"]),
        ((10**30 // 4, 10**30), ["made", "pause", "resume", "pause", "resume"]),
        ["made", "pause", "resume", "pause", "resume"],
    ]
    assert got == b"x" * 1000


@pytest.mark.parametrize("how", ["close", "abort"])
def test_writes_after_close_are_dropped(loop, caplog, how):
    """write()/writelines() after close() or abort() raise nothing; the
    data is dropped, and from the sixth such write on each one logs
    'SSL connection is closed' (asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES)."""
    async def main():
        srv, cli, server = await tls_pair(loop)
        getattr(cli.transport, how)()
        assert cli.transport.is_closing()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(4):
                cli.transport.write(b"dropped")
            cli.transport.writelines([b"dropped", b"too"])
            cli.transport.writelines([b"dropped"])
            cli.transport.write(b"dropped")
        await asyncio.wait_for(cli.lost, 5)
        server.close()
        await server.wait_closed()
        return bytes(srv.data)

    assert run(loop, main()) == b""
    warnings = [r.getMessage() for r in caplog.records
                if r.getMessage() == "SSL connection is closed"]
    assert len(warnings) == 2


def test_write_eof_refused(loop):
    """can_write_eof() is False and write_eof() raises NotImplementedError,
    also after close(); the refusal changes nothing."""
    async def main():
        srv, cli, server = await tls_pair(loop)
        tr = cli.transport
        assert tr.can_write_eof() is False
        with pytest.raises(NotImplementedError):
            tr.write_eof()
        tr.write(b"after")
        await wait_for_bytes(loop, srv, 5)
        tr.close()
        with pytest.raises(NotImplementedError):
            tr.write_eof()
        await asyncio.wait_for(cli.lost, 5)
        server.close()
        await server.wait_closed()
        return bytes(srv.data)

    assert run(loop, main()) == b"after"


def test_write_buffer_size_with_big_writes(loop):
    """One 8 MiB write and a writelines of 4 x 1 MiB to a peer that reads
    them all: get_write_buffer_size() drops back to 0, every byte arrives."""
    big = payload(8 << 20, b"big")
    parts = [payload(1 << 20, b"p%d" % i) for i in range(4)]

    async def main():
        srv, cli, server = await tls_pair(loop)
        cli.transport.write(big)
        cli.transport.writelines(parts)
        total = len(big) + sum(map(len, parts))
        await wait_for_bytes(loop, srv, total, timeout=25)
        deadline = loop.time() + 5
        while cli.transport.get_write_buffer_size() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        size = cli.transport.get_write_buffer_size()
        await close_all(server, cli)
        return bytes(srv.data), size

    got, size = run(loop, main(), timeout=30)
    assert size == 0
    assert got == big + b"".join(parts)


def test_writelines_item_without_len(loop, errors):
    """writelines([1]): asyncio queues the item before measuring it, so the
    TypeError of len() propagates and the item stays queued; the next
    write() then fails to encrypt it and ends the connection with a fatal
    error. fastloop keeps that order."""
    def misuse(tr):
        with pytest.raises(TypeError):
            tr.writelines([1])
        tr.write(b"next")

    exc = _connection_lost_after(loop, misuse)
    assert isinstance(exc, TypeError)
    assert [e["message"] for e in errors] == ["Fatal error on SSL protocol"]
