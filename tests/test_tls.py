"""TLS over stream transports (asyncio.sslproto on top), on both loops."""
import asyncio
import socket
import ssl

import pytest

from fl_support import run

test_utils = pytest.importorskip("test.test_asyncio.utils")


def server_ctx():
    return test_utils.simple_server_sslcontext()


def client_ctx():
    return test_utils.simple_client_sslcontext()


async def echo_handler(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_tls_echo_streams(loop):
    async def main():
        srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0,
                                         ssl=server_ctx())
        addr = srv.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(
            *addr, ssl=client_ctx(), server_hostname="",
            ssl_handshake_timeout=10)
        tr = writer.transport
        assert isinstance(tr.get_extra_info("sslcontext"), ssl.SSLContext)
        assert isinstance(tr.get_extra_info("ssl_object"), ssl.SSLObject)
        assert tr.get_extra_info("cipher") is not None
        assert tr.get_extra_info("socket") is not None
        payload = b"secret" * 50000
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_tls_protocol_connection(loop):
    async def main():
        srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0,
                                         ssl=server_ctx())
        addr = srv.sockets[0].getsockname()
        done = loop.create_future()
        got = bytearray()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                self.tr = tr
                tr.write(b"hello tls")

            def data_received(self, data):
                got.extend(data)
                if len(got) == 9:
                    self.tr.close()

            def connection_lost(self, exc):
                done.set_result(exc)

        await loop.create_connection(P, *addr, ssl=client_ctx(),
                                     server_hostname="")
        assert await asyncio.wait_for(done, 10) is None
        assert bytes(got) == b"hello tls"
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_start_tls_upgrade(loop):
    async def main():
        async def handler(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_ctx())
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        if not hasattr(asyncio.StreamWriter, "start_tls"):
            # before 3.11: the same through loop.start_tls
            async def handler(reader, writer):
                assert await reader.readline() == b"STARTTLS\n"
                writer.write(b"OK\n")
                await writer.drain()
                proto = writer.transport.get_protocol()
                new_tr = await loop.start_tls(writer.transport, proto,
                                              server_ctx(), server_side=True)
                writer._transport = new_tr
                writer.write((await reader.readline()).upper())
                await writer.drain()
                writer.close()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        proto = writer.transport.get_protocol()
        tls_tr = await loop.start_tls(writer.transport, proto, client_ctx(),
                                      server_hostname="")
        assert tls_tr.get_extra_info("ssl_object") is not None
        tls_tr.write(b"upgraded\n")
        assert await reader.readline() == b"UPGRADED\n"
        tls_tr.close()
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_start_tls_rejects_wrong_transport(loop):
    async def main():
        class Fake:
            pass
        with pytest.raises(TypeError):
            await loop.start_tls(Fake(), asyncio.Protocol(), client_ctx())
    run(loop, main())


def test_tls_handshake_timeout(loop):
    async def main():
        # A server that accepts and never answers the handshake.
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        try:
            with pytest.raises((ConnectionAbortedError, TimeoutError,
                                asyncio.TimeoutError)):
                await loop.create_connection(
                    asyncio.Protocol, *lsock.getsockname(),
                    ssl=client_ctx(), server_hostname="",
                    ssl_handshake_timeout=0.2)
        finally:
            lsock.close()
    run(loop, main())


def test_tls_verify_failure(loop):
    async def main():
        srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0,
                                         ssl=server_ctx())
        addr = srv.sockets[0].getsockname()
        strict = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(*addr, ssl=strict,
                                          server_hostname="localhost")
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_ssl_argument_errors(loop):
    async def main():
        with pytest.raises(ValueError, match="server_hostname"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1,
                                         server_hostname="x")
        with pytest.raises(ValueError, match="ssl_handshake_timeout"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1,
                                         ssl_handshake_timeout=1)
    run(loop, main())
