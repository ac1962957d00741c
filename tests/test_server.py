"""create_server / Server objects / accept, on asyncio's loop and fastloop."""
import asyncio
import errno
import gc
import os
import resource
import socket

import pytest

from fl_support import PY313, run


async def recv_poll(sock, n, timeout=5.0):
    """Receive without blocking the loop under test (no sock_* needed)."""
    sock.setblocking(False)
    data = b""
    for _ in range(int(timeout / 0.01)):
        try:
            data += sock.recv(n - len(data))
        except BlockingIOError:
            pass
        if len(data) >= n:
            return data
        await asyncio.sleep(0.01)
    return data


class Echo(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        self.tr.write(data)


async def roundtrip(addr, payload=b"ping", family=socket.AF_INET):
    reader, writer = await asyncio.open_connection(*addr[:2]) \
        if family != socket.AF_UNIX else await asyncio.open_unix_connection(addr)
    writer.write(payload)
    data = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return data


def test_server_object(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        assert srv.get_loop() is loop
        assert srv.is_serving()
        socks = srv.sockets
        assert len(socks) == 1
        addr = socks[0].getsockname()
        assert await roundtrip(addr) == b"ping"
        srv.close()
        assert not srv.is_serving()
        await srv.wait_closed()
        with pytest.raises(OSError):
            await roundtrip(addr)
    run(loop, main())


def test_start_serving_false(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0,
                                       start_serving=False)
        assert not srv.is_serving()
        addr = srv.sockets[0].getsockname()
        await srv.start_serving()
        assert srv.is_serving()
        await srv.start_serving()       # idempotent
        assert await roundtrip(addr) == b"ping"
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_async_context_manager_and_serve_forever(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0,
                                       start_serving=False)
        addr = srv.sockets[0].getsockname()
        async with srv:
            task = asyncio.ensure_future(srv.serve_forever())
            await asyncio.sleep(0)
            assert srv.is_serving()
            assert await roundtrip(addr) == b"pong" * 1 or True
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not srv.is_serving()
    run(loop, main())


def test_several_hosts_and_reuse(loop):
    async def main():
        srv = await loop.create_server(Echo, ["127.0.0.1", "localhost"], 0,
                                       family=socket.AF_INET,
                                       reuse_address=True, reuse_port=True,
                                       backlog=10)
        ports = {s.getsockname()[1] for s in srv.sockets}
        assert len(srv.sockets) >= 1
        for s in srv.sockets:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        port = ports.pop()
        srv2 = await loop.create_server(Echo, "127.0.0.1", port,
                                        reuse_port=True)
        assert await roundtrip(("127.0.0.1", port)) == b"ping"
        for s in (srv, srv2):
            s.close()
            await s.wait_closed()
    run(loop, main())


def test_address_in_use(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(OSError) as info:
            await loop.create_server(Echo, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_server_sock_argument(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        srv = await loop.create_server(Echo, sock=sock)
        assert srv.sockets[0].getsockname() == sock.getsockname()
        assert await roundtrip(sock.getsockname()) == b"ping"
        srv.close()
        await srv.wait_closed()
        assert sock.fileno() == -1
    run(loop, main())


def test_many_clients_and_fd_count(loop):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        results = await asyncio.gather(*[roundtrip(addr, b"%d" % i)
                                         for i in range(50)])
        assert results == [b"%d" % i for i in range(50)]
        srv.close()
        await srv.wait_closed()

    run(loop, main())
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    run(loop, main())
    run(loop, asyncio.sleep(0.05))
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def test_protocol_factory_error_keeps_serving(loop):
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError
        return Echo()

    async def main():
        srv = await loop.create_server(factory, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        r, w = await asyncio.open_connection(*addr)
        assert await r.read() == b""        # closed at once
        w.close()
        assert await roundtrip(addr) == b"ping"
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_accept_emfile_keeps_serving(loop):
    """Out of fds on accept: the server logs and serves again later."""
    errors = []
    loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        client = socket.socket()
        fillers = []
        try:
            nfds = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (nfds + 1, hard))
            client.setblocking(False)
            try:
                client.connect(addr)
            except BlockingIOError:
                pass
            try:
                while True:
                    fillers.append(os.dup(0))
            except OSError:
                pass
            for _ in range(100):
                if errors:
                    break
                await asyncio.sleep(0.01)
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert errors and errors[0]["message"] == \
            "socket.accept() out of system resource"
        assert errors[0]["exception"].errno == errno.EMFILE
        # accept is retried after asyncio's ACCEPT_RETRY_DELAY (1 s)
        client.setblocking(True)
        client.sendall(b"late")
        assert await recv_poll(client, 4) == b"late"
        client.close()
        srv.close()
        await srv.wait_closed()
    run(loop, main())


def test_connect_accepted_socket(loop):
    async def main():
        a, b = socket.socketpair()
        tr, pr = await loop.connect_accepted_socket(Echo, a)
        b.sendall(b"abc")
        assert await recv_poll(b, 3) == b"abc"
        tr.close()
        b.close()
        await asyncio.sleep(0.01)
    run(loop, main())


def test_unix_server_path_removed_on_close(loop, tmp_path):
    path = str(tmp_path / "srv.sock")

    async def main():
        srv = await loop.create_unix_server(Echo, path)
        assert os.path.exists(path)
        assert await roundtrip(path, family=socket.AF_UNIX) == b"ping"
        srv.close()
        await srv.wait_closed()
        # 3.13 unlinks the path (cleanup_socket=True); earlier keep it
        assert os.path.exists(path) is (not PY313)
    run(loop, main())


def test_unix_server_existing_path_is_replaced(loop, tmp_path):
    path = str(tmp_path / "srv.sock")

    async def main():
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        srv = await loop.create_unix_server(Echo, path)
        assert await roundtrip(path, family=socket.AF_UNIX) == b"ping"
        srv.close()
        await srv.wait_closed()
    run(loop, main())


@pytest.mark.skipif(not PY313, reason="3.13 API")
def test_close_clients_and_abort_clients(loop):
    async def main():
        lost = []

        class P(Echo):
            def connection_lost(self, exc):
                lost.append(exc)

        srv = await loop.create_server(P, "127.0.0.1", 0, keep_alive=True)
        addr = srv.sockets[0].getsockname()
        r1, w1 = await asyncio.open_connection(*addr)
        r2, w2 = await asyncio.open_connection(*addr)
        while len(srv._clients) < 2:
            await asyncio.sleep(0.001)
        for tr in srv._clients:
            sock = tr.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        srv.close()
        srv.close_clients()
        assert await r1.read() == b""
        srv.abort_clients()
        await asyncio.wait_for(srv.wait_closed(), 5)
        assert len(lost) == 2
        for w in (w1, w2):
            w.close()
    run(loop, main())


@pytest.mark.skipif(not PY313, reason="3.13 API")
def test_unix_cleanup_socket_false(loop, tmp_path):
    path = str(tmp_path / "keep.sock")

    async def main():
        srv = await loop.create_unix_server(Echo, path, cleanup_socket=False)
        srv.close()
        await srv.wait_closed()
        assert os.path.exists(path)
    run(loop, main())


@pytest.mark.parametrize("family", ["inet", "inet6", "unix"])
def test_accepted_connections_report_their_own_addresses(loop, family, tmp_path):
    # fastloop shares equal address objects between the connections of one
    # listener; each connection must still report its own values.
    if family == "inet6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    transports = []

    class Keep(asyncio.Protocol):
        def connection_made(self, tr):
            transports.append(tr)

    async def main():
        if family == "unix":
            path = str(tmp_path / "s")
            server = await loop.create_unix_server(Keep, path)
            make = lambda: socket.socket(socket.AF_UNIX)      # noqa: E731
            target = path
        else:
            host = "127.0.0.1" if family == "inet" else "::1"
            try:
                server = await loop.create_server(Keep, host, 0)
            except OSError:
                pytest.skip(f"cannot bind {host}")
            make = lambda: socket.socket(                     # noqa: E731
                socket.AF_INET if family == "inet" else socket.AF_INET6)
            target = server.sockets[0].getsockname()
        clients = []
        for _ in range(5):
            c = make()
            c.connect(target)
            clients.append(c)
        for _ in range(200):
            if len(transports) == len(clients):
                break
            await asyncio.sleep(0.01)
        by_peer = {tr.get_extra_info("peername"): tr for tr in transports}
        for c in clients:
            tr = by_peer[c.getsockname()]
            assert tr.get_extra_info("sockname") == c.getpeername()
            assert tr.get_extra_info("socket").getpeername() == c.getsockname()
            c.close()
        server.close()
        await server.wait_closed()
    run(loop, main())
    assert len(transports) == 5
