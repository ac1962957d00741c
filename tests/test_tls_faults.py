"""TLS when things go wrong: failed handshakes, aborts, peers that hang up
without close_notify or reset in the middle of a record, slow readers.

On asyncio's loop and on fastloop; the exceptions and the callbacks the app
protocol sees are asyncio's.  Every test checks the bytes that did arrive
and that no descriptor is left behind.
"""
import asyncio
import hashlib
import socket
import ssl

import pytest

from fl_support import Recorder, run
from tls_support import (PEER_TIMEOUT, BioConn, RawPeer,
                         client_ctx, open_fds, payload, reset_close,
                         server_ctx, signed_server_ctx, verifying_client_ctx)


# ---- handshakes that fail ----

@pytest.mark.parametrize("case", ["untrusted", "wrong_hostname"])
def test_handshake_fails_on_certificate(loop, case, errors):
    """A client that cannot verify the server: create_connection raises
    ssl.SSLCertVerificationError, the server's app protocol is never
    connected, and no socket is left open on either side."""
    if case == "untrusted":
        sctx, hostname = server_ctx(), "localhost"   # self-signed
    else:
        sctx, hostname = signed_server_ctx(), "example.org"
    fds = open_fds(loop)

    async def main():
        protos = []
        server = await loop.create_server(
            lambda: protos.append(Recorder(loop)) or protos[-1],
            "127.0.0.1", 0, ssl=sctx)
        addr = server.sockets[0].getsockname()
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await loop.create_connection(lambda: Recorder(loop), *addr,
                                         ssl=verifying_client_ctx(),
                                         server_hostname=hostname)
        # The server side sees the client's alert and drops the connection.
        await asyncio.sleep(0.1)
        server.close()
        await server.wait_closed()
        return info.value, protos

    exc, protos = run(loop, main())
    if case == "untrusted":
        assert exc.verify_code == 18, exc     # self-signed certificate
    else:
        assert "hostname" in exc.verify_message.lower(), exc
    assert all(p.events == [] for p in protos)
    # The server's side of it (an SSLError, an OSError) is not reported.
    assert errors == []
    assert open_fds(loop) == fds


def _read_hello_then(action):
    def script(sock, peer):
        hello = sock.recv(65536)
        assert hello[:1] == b"\x16", hello[:10]      # a handshake record
        action(sock)
    return script


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_peer_hangs_up_during_handshake(loop, how):
    """A server that reads the ClientHello and hangs up: create_connection
    raises ConnectionResetError (asyncio's for an EOF in the handshake, and
    the kernel's for a reset)."""
    fds = open_fds(loop)

    async def main():
        peer = RawPeer(_read_hello_then(
            reset_close if how == "rst" else lambda s: s.close()))
        with pytest.raises(ConnectionResetError):
            await loop.create_connection(asyncio.Protocol, *peer.addr,
                                         ssl=client_ctx(), server_hostname="")
        await loop.run_in_executor(None, peer.join)

    run(loop, main())
    assert open_fds(loop) == fds


def test_cancel_during_handshake_closes_the_connection(loop):
    """Cancelling create_connection while the handshake waits for the
    server aborts it: CancelledError, the peer sees the connection close,
    nothing is reported to the exception handler, no fd is left."""
    fds = open_fds(loop)

    def script(sock, peer):
        assert sock.recv(65536)[:1] == b"\x16"       # ClientHello
        peer.connected.set()
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        return rest

    async def main():
        import threading
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
        peer = RawPeer(script)
        peer.connected = threading.Event()
        task = loop.create_task(loop.create_connection(
            asyncio.Protocol, *peer.addr, ssl=client_ctx(), server_hostname=""))
        while not peer.connected.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rest = await loop.run_in_executor(None, peer.join)
        await asyncio.sleep(0.05)
        return rest, seen

    rest, seen = run(loop, main())
    # The peer got EOF (its recv loop ended), at most after an alert.
    assert rest == b"" or rest[:1] == b"\x15", rest[:10]
    assert seen == []
    assert open_fds(loop) == fds


@pytest.mark.parametrize("how", ["abort", "close"])
def test_plain_transport_closed_during_start_tls(loop, how):
    """The app aborts (or closes) the plain transport while start_tls
    waits for the server's answer: asyncio's start_tls then returns None
    (the waiter gets connection_lost's None), raises nothing and reports
    nothing; the socket is closed."""
    fds = open_fds(loop)

    async def main():
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
        lsock = socket.create_server(("127.0.0.1", 0))
        try:
            tr, proto = await loop.create_connection(asyncio.Protocol,
                                                     *lsock.getsockname())
            conn, _ = lsock.accept()
            task = loop.create_task(loop.start_tls(tr, proto, client_ctx(),
                                                   server_hostname=""))
            conn.setblocking(False)
            hello = await asyncio.wait_for(loop.sock_recv(conn, 65536), 5)
            assert hello[:1] == b"\x16"     # the ClientHello is out
            getattr(tr, how)()
            result = await asyncio.wait_for(task, 5)
            conn.close()
            await asyncio.sleep(0.02)
            return result, seen, tr.is_closing()
        finally:
            lsock.close()

    assert run(loop, main()) == (None, [], True)
    assert open_fds(loop) == fds


# ---- hang-ups after the handshake ----

async def connect_until_lost(loop, peer):
    """Connect a Recorder to the RawPeer over TLS; wait until the
    connection is lost and the peer's script ended: (protocol, exc)."""
    _, cli = await loop.create_connection(lambda: Recorder(loop), *peer.addr,
                                          ssl=client_ctx(), server_hostname="")
    exc = await asyncio.wait_for(cli.lost, 10)
    await loop.run_in_executor(None, peer.join)
    return cli, exc


def _send_then_close(body, close):
    def script(sock, peer):
        conn = BioConn(sock, server_ctx(), server_side=True)
        conn.handshake()
        conn.send(body)
        close(sock)
    return script


def test_peer_closes_without_close_notify(loop):
    """A peer that closes its socket right after its data, with no
    close_notify: asyncio treats it as an ordinary end: the app gets all
    the data, eof_received(), then connection_lost(None)."""
    body = payload(200_000)

    async def main():
        return await connect_until_lost(loop, RawPeer(_send_then_close(body, lambda s: s.close())))

    cli, exc = run(loop, main())
    assert exc is None
    assert cli.events == ["made", "eof", "lost"]
    assert bytes(cli.data) == body


def test_client_closes_without_close_notify_server_side(loop):
    """The same seen from a server on the loop: a raw TLS client sends a
    request and closes its socket without close_notify."""
    request = payload(50_000, b"request")

    def client(sock, peer):
        conn = BioConn(sock, client_ctx(), server_side=False, server_hostname=None)
        conn.handshake()
        conn.send(request)
        # A FIN, no close_notify; then read what the server still sends
        # (its session tickets, its close_notify) so that the close is not
        # turned into a reset by unread data.
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        sock.close()

    async def main():
        protos = []
        server = await loop.create_server(
            lambda: protos.append(Recorder(loop)) or protos[-1],
            "127.0.0.1", 0, ssl=server_ctx())
        peer = RawPeer(client, connect_to=server.sockets[0].getsockname())
        await loop.run_in_executor(None, peer.join)
        while not protos or not protos[0].lost.done():
            await asyncio.sleep(0.005)
        server.close()
        await server.wait_closed()
        return protos[0]

    srv = run(loop, main())
    assert srv.lost.result() is None
    assert srv.events == ["made", "eof", "lost"]
    assert bytes(srv.data) == request


def test_peer_resets_mid_record(loop):
    """A peer that resets the connection (SO_LINGER 0) in the middle of a
    TLS record of a large body: the app's connection_lost gets an
    exception, what arrived is a prefix of the body (never a byte of the
    cut record), and nothing crashes or leaks."""
    body = payload(1 << 20)
    fds = open_fds(loop)

    def script(sock, peer):
        conn = BioConn(sock, server_ctx(), server_side=True)
        conn.handshake()
        records = conn.encrypt(body)
        # Cut 100 bytes before the end: inside the last record (>100 bytes).
        cut = len(records) - 100
        sock.sendall(records[:cut])
        peer.release.wait(0.2)          # let the bytes reach the client
        reset_close(sock)
        return cut

    async def main():
        return await connect_until_lost(loop, RawPeer(script))

    cli, exc = run(loop, main())
    assert isinstance(exc, ConnectionResetError), repr(exc)
    assert "lost" in cli.events and cli.events.count("lost") == 1
    got = bytes(cli.data)
    assert len(got) < len(body)
    assert got == body[:len(got)]
    assert open_fds(loop) == fds


def test_abort_drops_pending_data(loop):
    """abort() on a TLS transport with data still buffered: the app gets
    connection_lost(None) at once, the buffer is gone."""
    async def main():
        peer = RawPeer(lambda sock, peer: (BioConn(sock, server_ctx(), True).handshake(),
                                           peer.release.wait(PEER_TIMEOUT)))
        tr, cli = await loop.create_connection(lambda: Recorder(loop), *peer.addr,
                                               ssl=client_ctx(), server_hostname="")
        chunk = payload(64 * 1024)
        # The kernel takes megabytes on loopback: write until the TLS
        # transport itself holds data.
        for _ in range(400):
            tr.write(chunk)
            await asyncio.sleep(0.001)
            if tr.get_write_buffer_size() > 0:
                break
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        exc = await asyncio.wait_for(cli.lost, 5)
        tr.abort()                      # twice: no effect
        tr.close()
        await loop.run_in_executor(None, peer.join)
        return cli, exc

    cli, exc = run(loop, main())
    assert exc is None
    assert cli.events.count("lost") == 1


# ---- a slow reader on a large body ----

def test_slow_stream_reader_large_body(loop):
    """8 MiB from a TLS server to a client that reads a few KiB at a time
    with pauses (its StreamReader's limit makes it pause the transport):
    every byte arrives once, in order."""
    size = 8 << 20

    async def handler(reader, writer):
        for i in range(0, size, 1 << 20):
            writer.write(payload(1 << 20, b"%d" % i))
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx())
        addr = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(
            *addr, ssl=client_ctx(), server_hostname="", limit=16 * 1024)
        digest = hashlib.sha256()
        total = reads = 0
        while chunk := await reader.read(4096):
            digest.update(chunk)
            total += len(chunk)
            reads += 1
            if reads % 64 == 0:
                await asyncio.sleep(0.002)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return total, digest.hexdigest()

    expected = hashlib.sha256(b"".join(
        payload(1 << 20, b"%d" % i) for i in range(0, size, 1 << 20))).hexdigest()
    assert run(loop, main(), timeout=25) == (size, expected)
