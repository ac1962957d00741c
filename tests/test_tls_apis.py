"""Every way into a TLS transport, on asyncio's loop and on fastloop:
start_tls on both sides, connect_accepted_socket(ssl=), Unix sockets,
asyncio's streams, and loop.sendfile over TLS (the fallback path).
"""
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from fl_support import Recorder, describe, run, subprocess_env
from tls_support import (client_ctx, open_fds, payload, server_ctx,
                         signed_server_ctx, verifying_client_ctx)


class Upgrader(Recorder):
    """Plain-text line protocol until told to upgrade."""

    def __init__(self, loop):
        super().__init__(loop)
        self.line = loop.create_future()

    def data_received(self, data):
        super().data_received(data)
        if b"\n" in self.data and not self.line.done():
            line, _, rest = bytes(self.data).partition(b"\n")
            self.data = bytearray(rest)
            self.line.set_result(line)


def test_start_tls_both_sides(loop):
    """A plain connection upgraded with loop.start_tls on the server and on
    the client; data both ways before and after; the app protocol stays
    the same object, now behind a TLS transport."""
    body = payload(500_000)
    fds = open_fds(loop)

    async def main():
        srv_side = loop.create_future()

        def factory():
            p = Upgrader(loop)
            srv_side.set_result(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        plain_cli, cli = await loop.create_connection(lambda: Upgrader(loop), *addr)
        srv = await srv_side
        plain_cli.write(b"STARTTLS\n")
        assert await srv.line == b"STARTTLS"
        srv.transport.write(b"GO\n")
        assert await cli.line == b"GO"
        # Both upgrade at once (the server's start_tls takes over the
        # transport in its first step, before the loop reads again).
        srv_tls, cli_tls = await asyncio.gather(
            loop.start_tls(srv.transport, srv, server_ctx(), server_side=True),
            loop.start_tls(plain_cli, cli, client_ctx(), server_hostname=""))
        assert srv_tls.get_protocol() is srv and cli_tls.get_protocol() is cli
        assert cli_tls.get_extra_info("ssl_object").version().startswith("TLS")
        assert srv_tls.get_extra_info("ssl_object").server_side
        cli_tls.write(body)
        srv_tls.write(body[::-1])
        deadline = loop.time() + 15
        while (len(srv.data) < len(body) or len(cli.data) < len(body)) \
                and loop.time() < deadline:
            await asyncio.sleep(0.005)
        cli_tls.close()
        await asyncio.wait_for(srv.lost, 10)
        await asyncio.wait_for(cli.lost, 10)
        server.close()
        await server.wait_closed()
        return srv, cli

    srv, cli = run(loop, main(), timeout=25)
    assert bytes(srv.data) == body
    assert bytes(cli.data) == body[::-1]
    assert srv.events == ["made", "eof", "lost"]
    assert open_fds(loop) == fds


def test_start_tls_handshake_timeout(loop):
    """start_tls to a peer that never answers: the same ConnectionAbortedError
    as create_connection's, and the plain transport is closed."""
    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        conn = None
        try:
            tr, proto = await loop.create_connection(asyncio.Protocol,
                                                     *lsock.getsockname())
            conn, _ = lsock.accept()
            with pytest.raises(ConnectionAbortedError):
                await loop.start_tls(tr, proto, client_ctx(), server_hostname="",
                                     ssl_handshake_timeout=0.2)
            await asyncio.sleep(0)
            return tr.is_closing()
        finally:
            if conn is not None:
                conn.close()
            lsock.close()

    assert run(loop, main()) is True


def test_connect_accepted_socket_ssl(loop):
    """A socket accepted by hand, served over TLS with
    connect_accepted_socket(ssl=...)."""
    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        lsock.setblocking(False)
        connecting = loop.create_task(loop.create_connection(
            lambda: Recorder(loop, echo=False), *lsock.getsockname(),
            ssl=client_ctx(), server_hostname=""))
        conn, _ = await loop.sock_accept(lsock)
        lsock.close()
        srv_tr, srv = await loop.connect_accepted_socket(
            lambda: Recorder(loop, echo=True), conn, ssl=server_ctx())
        cli_tr, cli = await connecting
        assert srv_tr.get_extra_info("ssl_object").server_side
        assert srv_tr.get_extra_info("socket").fileno() == conn.fileno()
        body = payload(300_000)
        cli_tr.write(body)
        while len(cli.data) < len(body):
            await asyncio.sleep(0.005)
        cli_tr.close()
        await asyncio.wait_for(srv.lost, 10)
        await asyncio.wait_for(cli.lost, 10)
        return bytes(cli.data) == body

    assert run(loop, main()) is True


def test_connect_accepted_socket_ssl_arguments(loop):
    async def main():
        a, b = socket.socketpair()
        try:
            with pytest.raises(ValueError, match="ssl_handshake_timeout"):
                await loop.connect_accepted_socket(asyncio.Protocol, a,
                                                   ssl_handshake_timeout=1)
        finally:
            a.close()
            b.close()
    run(loop, main())


def test_unix_tls(loop, tmp_path):
    """create_unix_server/create_unix_connection with ssl, and the stream
    helpers on top (start_unix_server/open_unix_connection)."""
    path = str(tmp_path / "tls.sock")
    body = payload(200_000)

    async def handler(reader, writer):
        data = await reader.readexactly(len(body))
        writer.write(hashlib.sha256(data).digest())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_unix_server(handler, path, ssl=server_ctx())
        reader, writer = await asyncio.open_unix_connection(
            path, ssl=client_ctx(), server_hostname="")
        assert writer.get_extra_info("ssl_object") is not None
        assert writer.get_extra_info("peername") == path
        writer.write(body)
        digest = await reader.read()
        writer.close()
        await writer.wait_closed()
        # The protocol-level call, with a name checked against the cert.
        server2 = await loop.create_unix_server(lambda: Recorder(loop, echo=True),
                                                path + "2", ssl=signed_server_ctx())
        tr, cli = await loop.create_unix_connection(
            lambda: Recorder(loop), path + "2", ssl=verifying_client_ctx(),
            server_hostname="localhost")
        tr.write(b"ping")
        while len(cli.data) < 4:
            await asyncio.sleep(0.005)
        tr.close()
        await asyncio.wait_for(cli.lost, 10)
        for s in (server, server2):
            s.close()
            await s.wait_closed()
        return digest, bytes(cli.data)

    assert run(loop, main()) == (hashlib.sha256(body).digest(), b"ping")


def test_unix_tls_needs_server_hostname(loop, tmp_path):
    """There is no host to take the name from: asyncio refuses."""
    async def main():
        with pytest.raises(ValueError, match="server_hostname"):
            await loop.create_unix_connection(asyncio.Protocol,
                                              str(tmp_path / "none"),
                                              ssl=client_ctx())
    run(loop, main())


def test_streams_tls_server_and_client(loop):
    """asyncio.start_server/open_connection with TLS: request/response in
    both directions with readline/readexactly, the name verified."""
    async def handler(reader, writer):
        while line := await reader.readline():
            n = int(line)
            writer.write(payload(n, line))
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0,
                                            ssl=signed_server_ctx())
        addr = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(
            *addr, ssl=verifying_client_ctx(), server_hostname="localhost")
        for n in (1, 1000, 16384, 16385, 1 << 20):
            writer.write(b"%d\n" % n)
            assert await reader.readexactly(n) == payload(n, b"%d\n" % n)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=20)


@pytest.fixture
def bigfile():
    data = os.urandom(3 << 20)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        yield f, data


def test_sendfile_over_tls_slow_reader(loop, bigfile):
    """loop.sendfile on a TLS transport falls back to reads and writes
    through the transport (fallback=False is refused) and waits for the
    peer's flow control: 3 MiB to a reader that pauses, bytes intact.
    (test_sendfile.py checks offsets and counts over TLS.)"""
    f, data = bigfile

    async def main():
        got = hashlib.sha256()
        total = 0
        read_all = loop.create_future()

        async def handler(reader, writer):
            nonlocal total
            while chunk := await reader.read(8192):
                got.update(chunk)
                total += len(chunk)
                await asyncio.sleep(0.0005)
            writer.close()
            read_all.set_result(None)

        server = await asyncio.start_server(handler, "127.0.0.1", 0,
                                            ssl=server_ctx(), limit=16384)
        addr = server.sockets[0].getsockname()
        tr, cli = await loop.create_connection(lambda: Recorder(loop), *addr,
                                               ssl=client_ctx(), server_hostname="")
        with pytest.raises(RuntimeError, match="fallback is disabled"):
            await loop.sendfile(tr, f, fallback=False)
        sent = await loop.sendfile(tr, f)
        tr.close()
        await asyncio.wait_for(cli.lost, 20)
        await asyncio.wait_for(read_all, 20)
        server.close()
        await server.wait_closed()
        return sent, total, got.hexdigest()

    assert run(loop, main(), timeout=28) == (
        len(data), len(data), hashlib.sha256(data).hexdigest())


NO_SSL = '''
import sys
sys.modules["ssl"] = None       # as on a Python built without ssl
sys.modules["_ssl"] = None
import asyncio, os
if os.environ["FL_TEST_IMPL"] == "fastloop":
    import fastloop             # must import without ssl
    loop = fastloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()

async def main():
    srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    try:
        await loop.start_tls(tr, asyncio.Protocol(), object())
    except Exception as e:
        print(type(e).__name__, e)
    tr.close()
    srv.close()
    await srv.wait_closed()

loop.run_until_complete(main())
loop.close()
'''


def test_start_tls_without_ssl_module(impl):
    """With no ssl module, start_tls() raises RuntimeError as asyncio's
    does, and importing fastloop does not need ssl."""
    proc = subprocess.run([sys.executable, "-c", NO_SSL], capture_output=True,
                          text=True, timeout=30, env=subprocess_env(impl))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "RuntimeError Python ssl module is not available\n"
