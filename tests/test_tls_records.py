"""TLS records in, plaintext out: every byte arrives once, in order, on
asyncio's loop and on fastloop, whatever the records look like on the wire.

Records of many sizes, records cut into one-byte segments, hundreds of
records in one segment, Protocol and BufferedProtocol on top, pause and
resume of reading in the middle of a body, a slow BufferedProtocol on a
large body, and a peer that resets in the middle of a record. The raw
peers (tls_support.RawPeer) write the TLS records themselves, so the test
decides where the record boundaries and the segment boundaries fall.
"""
import asyncio
import socket
import time

import pytest

from fl_support import Recorder, run
from tls_support import (BioConn, BufferedRecorder, PausesAfterEachDelivery,
                         RawPeer, client_ctx, close_all, open_fds, payload,
                         reset_close, server_ctx, tls_pair)

# Plaintext per TLS record at most (RFC 8446, 5.1): SSLObject.write()
# cuts a larger write into records of this size.
MAX_RECORD = 16384

# The app protocols on top: a Protocol, and BufferedProtocols whose buffer
# is smaller than one record or larger than many.
KINDS = {
    "protocol": lambda loop: Recorder(loop),
    "buffered-1000": lambda loop: BufferedRecorder(loop, size=1000),
    "buffered-256k": lambda loop: BufferedRecorder(loop, size=256 * 1024),
}


async def wait_for_bytes(loop, proto, n, timeout=20):
    deadline = loop.time() + timeout
    while len(proto.data) < n and loop.time() < deadline:
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("size", [1, 2, 17, 1000, MAX_RECORD - 1, MAX_RECORD,
                                  MAX_RECORD + 1, 100_003, 1 << 20])
def test_body_of_any_size(loop, kind, size):
    """One write() of `size` bytes from a server on the loop: the client's
    app protocol gets exactly those bytes."""
    body = payload(size, b"%d" % size)

    async def main():
        srv, cli, server = await tls_pair(loop, client_proto=lambda: KINDS[kind](loop))
        srv.transport.write(body)
        await wait_for_bytes(loop, cli, size)
        await close_all(server, cli)
        return bytes(cli.data)

    assert run(loop, main(), timeout=30) == body


def _records(conn, pieces):
    """The TLS records of each piece, one write() (so at least one record)
    per piece, concatenated."""
    out = bytearray()
    for piece in pieces:
        out += conn.encrypt(piece)
    return bytes(out)


def _send_records(pieces, segment):
    """A server that sends the records of `pieces` cut into segments of
    `segment` bytes (with a pause after each, so that the client reads
    them one by one), or all at once (segment None), then closes once
    released."""
    def script(sock, peer):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = BioConn(sock, server_ctx(), server_side=True)
        conn.handshake()
        wire = _records(conn, pieces)
        if segment is None:
            sock.sendall(wire)
        else:
            for i in range(0, len(wire), segment):
                sock.sendall(wire[i:i + segment])
                time.sleep(0.0003)
        peer.release.wait(10)
        return len(wire)
    return script


def _pieces(sizes, seed):
    return [payload(n, b"%s-%d" % (seed, i)) for i, n in enumerate(sizes)]


def _received_from_raw_peer(loop, kind, pieces, segment):
    """The plaintext a client of `kind` receives from a RawPeer that sends
    `pieces` as records, in segments of `segment` bytes (None: at once)."""
    body_size = sum(map(len, pieces))

    async def main():
        peer = RawPeer(_send_records(pieces, segment))
        _, cli = await loop.create_connection(
            lambda: KINDS[kind](loop), *peer.addr, ssl=client_ctx(),
            server_hostname="")
        await wait_for_bytes(loop, cli, body_size)
        got = bytes(cli.data)
        cli.transport.abort()
        await loop.run_in_executor(None, peer.join)
        return got

    return run(loop, main(), timeout=30)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("segment", [1, 7, 5000, None],
                         ids=["byte-by-byte", "7-bytes", "5000-bytes", "one-send"])
def test_records_cut_anywhere(loop, kind, segment):
    """Records of odd sizes (1 byte to several records' worth), their
    bytes sent in segments that cut headers and bodies anywhere, or all of
    them in one segment: the plaintext arrives whole and in order."""
    sizes = [1, 5, 300, MAX_RECORD, 1, MAX_RECORD + 3, 2, 70_000, 1]
    if segment is not None and segment < 100:
        sizes = [1, 5, 300, 1, 2, 1200, 1]      # byte by byte: keep it short
    pieces = _pieces(sizes, b"cut")
    body = b"".join(pieces)

    assert _received_from_raw_peer(loop, kind, pieces, segment) == body


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hundreds_of_records_in_one_read(loop, kind):
    """500 small records (1 to 700 bytes each) arrive in one segment: one
    read feeds them all to the TLS layer; nothing is lost or repeated."""
    pieces = _pieces([1 + (i * 37) % 700 for i in range(500)], b"many")
    body = b"".join(pieces)

    assert _received_from_raw_peer(loop, kind, pieces, None) == body


class PausingBuffered(PausesAfterEachDelivery, BufferedRecorder):
    """A BufferedProtocol that pauses reading after each buffer_updated()
    and resumes 5 ms later."""

    resume_after = 0.005


@pytest.mark.parametrize("size", [1000, 64 * 1024])
def test_buffered_pause_resume_mid_stream(loop, size):
    """A BufferedProtocol that pauses after every buffer: nothing is
    delivered while paused, and the 1 MiB body arrives whole."""
    body = payload(1 << 20, b"pause")

    async def main():
        srv, cli, server = await tls_pair(
            loop, client_proto=lambda: PausingBuffered(loop, size))
        srv.transport.write(body)
        await wait_for_bytes(loop, cli, len(body), timeout=25)
        await close_all(server, cli)
        return cli

    cli = run(loop, main(), timeout=30)
    assert cli.delivered_while_paused == 0
    assert cli.pauses > 1
    assert bytes(cli.data) == body


class SlowBuffered(BufferedRecorder):
    """A BufferedProtocol with a 4 KiB buffer that pauses reading for
    2 ms every 32 buffers: the peer's 4 MiB outrun it, and the TLS layer
    must hold the rest back (pausing the socket) without losing any."""

    def __init__(self, loop):
        super().__init__(loop, size=4096)
        self.n = 0

    def buffer_updated(self, nbytes):
        super().buffer_updated(nbytes)
        self.n += 1
        if self.n % 32 == 0:
            self.transport.pause_reading()
            self.loop.call_later(0.002, self.transport.resume_reading)


def test_slow_buffered_reader_large_body(loop):
    body = payload(4 << 20, b"slow")

    async def main():
        srv, cli, server = await tls_pair(loop, client_proto=lambda: SlowBuffered(loop))
        srv.transport.write(body)
        await wait_for_bytes(loop, cli, len(body), timeout=25)
        await close_all(server, cli)
        return bytes(cli.data)

    assert run(loop, main(), timeout=30) == body


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_peer_resets_mid_record(loop, kind):
    """The peer sends 10 full records and half of the 11th, waits until
    they were read, then resets: the app got exactly the 10 records (the
    cut one is never delivered, not even in part), then connection_lost
    with ConnectionResetError; no fd is left behind."""
    body = payload(11 * MAX_RECORD, b"reset")
    fds = open_fds(loop)

    def script(sock, peer):
        conn = BioConn(sock, server_ctx(), server_side=True)
        conn.handshake()
        full = conn.encrypt(body[:10 * MAX_RECORD])
        last = conn.encrypt(body[10 * MAX_RECORD:])
        sock.sendall(full + last[:len(last) // 2])
        peer.release.wait(10)       # released once the 10 records arrived
        reset_close(sock)

    async def main():
        peer = RawPeer(script)
        _, cli = await loop.create_connection(
            lambda: KINDS[kind](loop), *peer.addr, ssl=client_ctx(),
            server_hostname="")
        await wait_for_bytes(loop, cli, 10 * MAX_RECORD)
        await asyncio.sleep(0.05)   # the half record is in by now
        peer.release.set()
        exc = await asyncio.wait_for(cli.lost, 10)
        await loop.run_in_executor(None, peer.join)
        return cli, exc

    cli, exc = run(loop, main(), timeout=30)
    assert isinstance(exc, ConnectionResetError), repr(exc)
    assert cli.events.count("lost") == 1
    assert bytes(cli.data) == body[:10 * MAX_RECORD]
    assert open_fds(loop) == fds
