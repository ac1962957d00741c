"""Memory settles under a repeated workload.

Parametrized over both loops: the asyncio run is the control that proves the
measurement itself is stable.  Each workload round is 100k call_soon + 10k
timers (half of them cancelled) + 2k tasks; memory is measured after rounds
2..N and must not keep growing.
"""
import asyncio
import ctypes
import gc
import os
import ssl
import sys

import pytest

pytestmark = pytest.mark.leak

ROUNDS = 6


def _rss():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use():
    """Bytes handed out by malloc and not freed (glibc mallinfo2).

    Unlike RSS this does not move with heap fragmentation or with pymalloc
    arenas, so it sees a C-level leak (ring buffers, heaps, watchers) alone.
    Falls back to RSS where mallinfo2 is missing.
    """
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return _rss()
    fn.restype = _Mallinfo2
    info = fn()
    return info.uordblks + info.hblkhd


def _workload(loop):
    count = [0]

    def cb(x):
        count[0] += 1

    for i in range(100_000):
        loop.call_soon(cb, i)
    handles = [loop.call_later(0.0001 * (i % 10), cb, i) for i in range(10_000)]
    for h in handles[::2]:
        h.cancel()
    del handles

    async def t(i):
        await asyncio.sleep(0)
        return i

    async def main():
        await asyncio.gather(*[t(i) for i in range(2000)])
        await asyncio.sleep(0.002)

    loop.run_until_complete(main())
    assert count[0] == 100_000 + 5_000


def _measure(loop):
    blocks, rss = [], []
    for _ in range(ROUNDS):
        _workload(loop)
        gc.collect()
        blocks.append(sys.getallocatedblocks())
        rss.append(_malloc_in_use())
    return blocks, rss


def test_memory_settles(loop):
    _workload(loop)      # warm up freelists, caches, executor-free paths
    blocks, rss = _measure(loop)
    # Python-level objects: a per-call leak of one object would add ~100k
    # blocks per round.
    growth_blocks = blocks[-1] - blocks[1]
    assert growth_blocks < 2_000, blocks
    # C-level memory (ring buffers, heaps, libev): a leak of even 16 bytes per
    # callback is 1.6 MB per round, 6 MB over the measured rounds.
    growth = rss[-1] - rss[1]
    assert growth < 3 * 1024 * 1024, rss


def test_loops_created_and_closed_do_not_leak(loop_factory):
    def cycle():
        for _ in range(200):
            lp = loop_factory()
            lp.call_soon(lp.stop)
            lp.run_forever()
            lp.close()
        gc.collect()

    cycle()
    b0, r0 = sys.getallocatedblocks(), _malloc_in_use()
    cycle()
    cycle()
    assert sys.getallocatedblocks() - b0 < 2_000
    # 400 loops: a leaked epoll/eventfd state or ring of even 4 KB each
    # would be 1.6 MB
    assert _malloc_in_use() - r0 < 1024 * 1024


def test_handles_are_freed(loop):
    import weakref

    class Cb:
        def __call__(self):
            pass

    refs = []
    for _ in range(100):
        cb = Cb()
        refs.append(weakref.ref(cb))
        loop.call_soon(cb)
        loop.call_later(0.001, cb)
        loop.call_later(100, cb).cancel()
    del cb
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


def _transport_workload(loop):
    """Bytes through every kind of transport: TCP small and bulk messages
    (the copying and the direct read paths), a pipe in both directions past
    its default size, and UDP datagrams."""
    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, data):
            self.tr.write(data)

    async def tcp():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for size in (100, 1000, 200_000, 50, 1 << 20):
            for _ in range(5):
                writer.write(b"x" * size)
                await reader.readexactly(size)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    async def pipes():
        r, w = os.pipe()
        wt, _ = await loop.connect_write_pipe(asyncio.Protocol, open(w, "wb", 0))
        reader = asyncio.StreamReader()
        rt, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), open(r, "rb", 0))
        wt.write(b"p" * (3 << 20))
        wt.close()
        assert len(await reader.read()) == 3 << 20
        rt.close()

    async def udp():
        # Batches small enough for the receive buffer: UDP may drop the rest.
        got = asyncio.Queue()

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.put_nowait(data)

        a, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                   local_addr=("127.0.0.1", 0))
        b, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        for _ in range(10):
            for _ in range(20):
                a.sendto(b"d" * 500, b.get_extra_info("sockname"))
            for _ in range(20):
                await asyncio.wait_for(got.get(), 10)
        a.close()
        b.close()
        await asyncio.sleep(0)

    async def main():
        await tcp()
        await pipes()
        await udp()

    loop.run_until_complete(main())


def test_transports_memory_settles(loop):
    _transport_workload(loop)          # warm up
    blocks, used = [], []
    for _ in range(ROUNDS):
        _transport_workload(loop)
        gc.collect()
        blocks.append(sys.getallocatedblocks())
        used.append(_malloc_in_use())
    # One leaked object per read or write would be thousands of blocks a
    # round; one leaked bulk buffer (up to 256 KiB) would be megabytes.
    assert blocks[-1] - blocks[1] < 1_000, blocks
    assert used[-1] - used[1] < 2 * 1024 * 1024, used


def _tls_workload(loop, sctx, cctx):
    """TLS connections made, used and closed: a server and clients on the
    loop (Protocol and streams), closes from either side, a plain
    connection upgraded with start_tls on both sides, and a handshake that
    fails verification."""
    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, data):
            self.tr.write(data)

    async def echo_clients(port):
        for i in range(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=cctx, server_hostname="")
            for size in (100, 20_000, 300_000):
                writer.write(b"t" * size)
                await reader.readexactly(size)
            writer.close()
            await writer.wait_closed()

    async def server_closes(port):
        # The server side closes first (and the client aborts one).
        async def bye(reader, writer):
            writer.write(b"bye")
            writer.close()

        server = await asyncio.start_server(bye, "127.0.0.1", 0, ssl=sctx)
        addr = server.sockets[0].getsockname()
        for i in range(5):
            reader, writer = await asyncio.open_connection(
                *addr, ssl=cctx, server_hostname="")
            assert await reader.read() == b"bye"
            if i % 2:
                writer.transport.abort()
            else:
                writer.close()
                await writer.wait_closed()
        server.close()
        await server.wait_closed()

    async def upgrades():
        async def handler(reader, writer):
            # "S", then "K" back: the client sends its ClientHello only
            # after "K", so no TLS byte lands in the plain StreamReader.
            await reader.readexactly(1)
            writer.write(b"K")
            tls = await loop.start_tls(writer.transport,
                                       writer.transport.get_protocol(),
                                       sctx, server_side=True)
            writer._transport = tls     # as StreamWriter.start_tls does
            data = await reader.readexactly(5000)
            writer.write(data)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        for _ in range(5):
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(b"S")
            assert await reader.readexactly(1) == b"K"
            proto = writer.transport.get_protocol()
            tls = await loop.start_tls(writer.transport, proto, cctx,
                                       server_hostname="")
            tls.write(b"u" * 5000)
            assert await reader.readexactly(5000) == b"u" * 5000
            tls.close()
            await asyncio.sleep(0)
        server.close()
        await server.wait_closed()

    async def failed_handshakes(port):
        strict = ssl.create_default_context()
        for _ in range(3):
            try:
                await asyncio.open_connection("127.0.0.1", port, ssl=strict,
                                              server_hostname="localhost")
            except ssl.SSLCertVerificationError:
                pass
            else:
                raise AssertionError("the handshake should have failed")

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=sctx)
        port = server.sockets[0].getsockname()[1]
        await echo_clients(port)
        await server_closes(port)
        await upgrades()
        await failed_handshakes(port)
        server.close()
        await server.wait_closed()
        # Let the servers' last closes (close_notify exchanges) finish.
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())


def test_tls_memory_and_fds_settle(loop):
    from test.test_asyncio import utils as test_utils
    sctx = test_utils.simple_server_sslcontext()
    cctx = test_utils.simple_client_sslcontext()
    loop.set_exception_handler(lambda lp, ctx: None)  # the failed handshakes
    _tls_workload(loop, sctx, cctx)                   # warm up
    blocks, used, fds = [], [], []
    for _ in range(ROUNDS):
        _tls_workload(loop, sctx, cctx)
        gc.collect()
        blocks.append(sys.getallocatedblocks())
        used.append(_malloc_in_use())
        fds.append(len(os.listdir("/proc/self/fd")))
    # A leaked SSLObject, transport or protocol per connection is dozens of
    # blocks, and each round makes 23 connections; a leaked OpenSSL
    # connection state (tens of KiB, in malloc) would be ~0.5 MiB a round.
    assert blocks[-1] - blocks[1] < 1_000, blocks
    assert used[-1] - used[1] < 2 * 1024 * 1024, used
    assert fds[-1] == fds[0], fds
