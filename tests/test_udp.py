"""Datagram endpoints and transports: create_datagram_endpoint, sendto,
error_received, flow control, closing; UDP and Unix datagram sockets.

Every test runs on asyncio's loop and on fastloop, with the same
expectations (asyncio's behaviour of the running Python version).
"""
import asyncio
import contextvars
import gc
import os
import socket
import sys
import tempfile
import warnings

import pytest

from fl_support import PY310, PY313, run

HAVE_IPV6 = socket.has_ipv6
try:
    _s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    _s.bind(("::1", 0))
    _s.close()
except OSError:
    HAVE_IPV6 = False

# What one buffered datagram adds to get_write_buffer_size() beyond its data.
HEADER = 8 if PY313 else 0


class Proto(asyncio.DatagramProtocol):
    """Records every callback; checks the order asyncio promises."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.events = []
        self.received = []
        self.errors = []
        self.made = 0
        self.lost = []
        self.done = loop.create_future()
        self.got_one = None

    def connection_made(self, transport):
        assert self.made == 0 and not self.lost
        self.made += 1
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        assert self.made == 1 and not self.lost
        self.received.append((data, addr))
        if self.got_one is not None and not self.got_one.done():
            self.got_one.set_result(None)

    def error_received(self, exc):
        self.errors.append(exc)
        self.events.append("error")

    def connection_lost(self, exc):
        assert self.made == 1
        self.lost.append(exc)
        self.events.append("lost")
        if not self.done.done():
            self.done.set_result(exc)

    async def wait_datagrams(self, n, timeout=5):
        deadline = self.loop.time() + timeout
        while len(self.received) < n:
            assert self.loop.time() < deadline, (len(self.received), n)
            await asyncio.sleep(0.002)


class Echo(Proto):
    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        self.transport.sendto(b"re:" + data, addr)


def is_fastloop(loop):
    return not type(loop).__module__.startswith("asyncio")


def open_fds(loop=None):
    """The open fds; with a loop, after it ran once (fastloop opens its
    signal wakeup socketpair on the first run)."""
    if loop is not None:
        run(loop, asyncio.sleep(0))
    gc.collect()    # what earlier tests left to the collector
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory() as d:
        yield d


def endpoint(loop, factory, **kw):
    return run(loop, loop.create_datagram_endpoint(factory, **kw))


def close_all(loop, *protos):
    for p in protos:
        if p.transport is not None and not p.transport.is_closing():
            p.transport.close()
    for p in protos:
        run(loop, p.done)


# ---- round trips ----

def _round_trip(loop, host, family):
    st, server = endpoint(loop, lambda: Echo(loop), local_addr=(host, 0),
                          family=family)
    addr = st.get_extra_info("sockname")
    ct, client = endpoint(loop, lambda: Proto(loop), remote_addr=addr[:2])
    assert server.events == ["made"] and client.events == ["made"]
    assert isinstance(st, asyncio.BaseTransport)
    assert isinstance(st, asyncio.Transport)    # asyncio's is one too

    ct.sendto(b"hello")
    ct.sendto(bytearray(b"world"))
    ct.sendto(memoryview(b"!!"))
    run(loop, client.wait_datagrams(3))
    assert [d for d, _ in client.received] == [b"re:hello", b"re:world",
                                               b"re:!!"]
    assert all(a[:2] == addr[:2] for _, a in client.received)
    csock = ct.get_extra_info("sockname")
    assert [a for _, a in server.received] == [csock] * 3
    if family == socket.AF_INET:
        assert server.received[0][1] == ("127.0.0.1", csock[1])
    else:
        assert len(server.received[0][1]) == 4
    assert ct.get_extra_info("peername") == addr
    assert st.get_extra_info("peername") is None
    close_all(loop, client, server)
    assert client.lost == [None] and server.lost == [None]
    assert client.events == ["made", "lost"]


def test_round_trip_ipv4(loop):
    _round_trip(loop, "127.0.0.1", socket.AF_INET)


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback")
def test_round_trip_ipv6(loop):
    _round_trip(loop, "::1", socket.AF_INET6)


def test_unconnected_sendto_many_peers(loop):
    st, server = endpoint(loop, lambda: Echo(loop), local_addr=("127.0.0.1", 0))
    addr = st.get_extra_info("sockname")
    peers = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        peers.append(s)
    try:
        ut, unc = endpoint(loop, lambda: Proto(loop),
                           local_addr=("127.0.0.1", 0))
        assert ut.get_extra_info("peername") is None
        for i, s in enumerate(peers):
            ut.sendto(b"to%d" % i, s.getsockname())
            ut.sendto(b"again", list(s.getsockname()) and s.getsockname())
        ut.sendto(b"srv", addr)
        run(loop, unc.wait_datagrams(1))
        assert unc.received == [(b"re:srv", addr)]
        for i, s in enumerate(peers):
            assert s.recvfrom(100) == (b"to%d" % i, ut.get_extra_info("sockname"))
            assert s.recv(100) == b"again"
            s.sendto(b"back%d" % i, ut.get_extra_info("sockname"))
        run(loop, unc.wait_datagrams(4))
        assert sorted(d for d, _ in unc.received[1:]) == [b"back0", b"back1",
                                                          b"back2"]
        close_all(loop, unc, server)
    finally:
        for s in peers:
            s.close()


def test_many_datagrams(loop):
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    addr = st.get_extra_info("sockname")
    ct, client = endpoint(loop, lambda: Proto(loop), remote_addr=addr)
    total = 0
    for batch in range(40):
        for i in range(50):
            ct.sendto(b"%d:%d" % (batch, i) * (1 + i % 7))
        total += 50
        run(loop, server.wait_datagrams(total))
    expected = [b"%d:%d" % (b, i) * (1 + i % 7)
                for b in range(40) for i in range(50)]
    assert [d for d, _ in server.received] == expected
    assert ct.get_write_buffer_size() == 0
    close_all(loop, client, server)


def test_ready_callbacks_run_before_datagrams(loop):
    # asyncio queues the reader after the callbacks already due when the poll
    # finds the datagram; protocols rely on that order (cpython gh-91227).
    order = []

    class P(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            order.append("datagram")

    st, server = endpoint(loop, lambda: P(loop), local_addr=("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", st.get_extra_info("sockname"))
    loop.call_soon(order.append, "soon")
    run(loop, server.wait_datagrams(1))
    assert order == ["soon", "datagram"]
    close_all(loop, server)


def test_large_datagram(loop):
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=st.get_extra_info("sockname"))
    big = bytes(range(256)) * 200       # 51200 bytes, one datagram
    ct.sendto(big)
    run(loop, server.wait_datagrams(1))
    assert server.received[0][0] == big
    close_all(loop, client, server)


@pytest.mark.skipif(PY313, reason="3.13 sends empty datagrams")
def test_empty_datagram_not_sent_before_313(loop):
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=st.get_extra_info("sockname"))
    ct.sendto(b"")
    ct.sendto(b"", ("127.0.0.1", 1))     # returns before the address check
    ct.sendto(b"x")
    run(loop, server.wait_datagrams(1))
    run(loop, asyncio.sleep(0.05))
    assert [d for d, _ in server.received] == [b"x"]
    close_all(loop, client, server)


@pytest.mark.skipif(not PY313, reason="before 3.13 sendto(b'') sends nothing")
def test_empty_datagram_sent_from_313(loop):
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=st.get_extra_info("sockname"))
    ct.sendto(b"")
    ct.sendto(b"x")
    run(loop, server.wait_datagrams(2))
    assert [d for d, _ in server.received] == [b"", b"x"]
    close_all(loop, client, server)


# ---- errors ----

def _refused_addr():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()
    return addr


def test_unreachable_peer_error_received(loop):
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=_refused_addr())

    async def provoke():
        while not client.errors:
            ct.sendto(b"ping")
            await asyncio.sleep(0.01)

    run(loop, provoke())
    assert isinstance(client.errors[0], ConnectionRefusedError)
    assert not ct.is_closing()      # an ICMP error does not close it
    assert client.lost == []
    close_all(loop, client)
    assert client.lost == [None]


def test_sendto_wrong_address_when_connected(loop):
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    addr = st.get_extra_info("sockname")
    ct, client = endpoint(loop, lambda: Proto(loop), remote_addr=addr)
    with pytest.raises(ValueError, match="Invalid address: must be None or"):
        ct.sendto(b"x", ("127.0.0.1", addr[1] + 1 if addr[1] < 65535 else 1))
    ct.sendto(b"same", addr)
    ct.sendto(b"none", None)
    run(loop, server.wait_datagrams(2))
    assert [d for d, _ in server.received] == [b"same", b"none"]
    close_all(loop, client, server)


def test_sendto_not_bytes(loop):
    ct, client = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    with pytest.raises(TypeError, match="data argument must be a bytes-like "
                                        "object, not 'str'"):
        ct.sendto("text", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        ct.sendto()
    assert not ct.is_closing()
    close_all(loop, client)


def test_sendto_bad_address_is_fatal(loop):
    # asyncio: an address the socket module rejects with a non-OSError is a
    # fatal write error: exception handler, then connection_lost(exc).
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    ct, client = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct.sendto(b"x", "not-a-tuple")
    assert ct.is_closing()
    exc = run(loop, client.done)
    assert isinstance(exc, TypeError)
    assert contexts[0]["message"] == "Fatal write error on datagram transport"
    assert contexts[0]["exception"] is exc
    assert contexts[0]["transport"] is ct


def test_sendto_unresolvable_host_error_received(loop):
    ct, client = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct.sendto(b"x", ("host.invalid", 9))
    assert len(client.errors) == 1
    assert isinstance(client.errors[0], socket.gaierror)
    assert not ct.is_closing()
    close_all(loop, client)


def test_sendto_after_close_connected(loop, caplog):
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=("127.0.0.1", 9))
    ct.close()
    assert ct.is_closing()
    run(loop, client.done)
    with caplog.at_level("WARNING", logger="asyncio"):
        for _ in range(7):
            ct.sendto(b"x")       # counted and dropped, never raises
    warned = [r for r in caplog.records
              if r.getMessage() == "socket.send() raised exception."]
    assert len(warned) == 3
    assert client.lost == [None]


def test_sendto_while_closing_unconnected(loop):
    # Between close() and connection_lost(), the socket still sends.
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ut, unc = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ut.close()
    ut.sendto(b"late", st.get_extra_info("sockname"))
    run(loop, server.wait_datagrams(1))
    run(loop, unc.done)
    close_all(loop, server)


def test_close_twice_and_abort(loop):
    ct, client = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct.close()
    ct.close()
    ct.abort()
    run(loop, client.done)
    run(loop, asyncio.sleep(0.01))
    assert client.lost == [None]
    assert ct.get_protocol() is None or ct.get_protocol() is client
    assert ct.get_extra_info("socket").fileno() == -1

    at, ab = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    at.abort()
    assert at.is_closing()
    run(loop, ab.done)
    assert ab.lost == [None]


def test_callback_errors_go_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Bad(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"boom":
                raise ZeroDivisionError("boom")

    st, server = endpoint(loop, lambda: Bad(loop), local_addr=("127.0.0.1", 0))
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=st.get_extra_info("sockname"))
    ct.sendto(b"boom")
    ct.sendto(b"fine")
    run(loop, server.wait_datagrams(2))
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert not st.is_closing()
    close_all(loop, client, server)


def test_keyboard_interrupt_from_protocol_propagates(loop):
    class Interrupting(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            raise KeyboardInterrupt

    st, server = endpoint(loop, lambda: Interrupting(loop),
                          local_addr=("127.0.0.1", 0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", st.get_extra_info("sockname"))
    s.close()
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(5))
    st.close()
    run(loop, server.done)


# ---- wrong arguments ----

def _raises(loop, exc, match=None, **kw):
    with pytest.raises(exc, match=match):
        endpoint(loop, asyncio.DatagramProtocol, **kw)


def test_no_address_no_family(loop):
    _raises(loop, ValueError, "unexpected address family")


def test_address_not_a_pair(loop):
    exc = AssertionError if PY310 else TypeError
    _raises(loop, exc, "2-tuple is expected", local_addr="localhost")
    _raises(loop, exc, "2-tuple is expected",
            remote_addr=("127.0.0.1", 1, 2, 3))


def test_wrong_sock_type(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        msg = ("A datagram socket was expected" if PY313
               else "A UDP Socket was expected")
        _raises(loop, ValueError, msg, sock=sock)


def test_sock_with_modifiers(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for kw in (dict(local_addr=("127.0.0.1", 0)),
                   dict(remote_addr=("127.0.0.1", 9)), dict(family=2),
                   dict(proto=17), dict(flags=1), dict(reuse_port=True),
                   dict(allow_broadcast=True)):
            _raises(loop, ValueError, "socket modifier keyword arguments "
                    "can not be used when sock is specified", sock=sock, **kw)
        assert sock.fileno() >= 0   # the caller's socket is left open


def test_no_matching_family(loop):
    if not HAVE_IPV6:
        pytest.skip("no IPv6 loopback")
    _raises(loop, ValueError, "can not get address information",
            local_addr=("::1", 0), remote_addr=("127.0.0.1", 9))


def test_unix_address_must_be_str(loop):
    _raises(loop, TypeError, "string is expected", family=socket.AF_UNIX,
            local_addr=("127.0.0.1", 0))


def test_bind_error_closes_socket(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        before = open_fds(loop)
        _raises(loop, OSError, None, local_addr=taken.getsockname())
        assert open_fds() == before


@pytest.mark.skipif(not PY310, reason="reuse_address exists on 3.10 only")
def test_reuse_address_310(loop):
    _raises(loop, ValueError, "reuse_address=True. is no longer supported",
            local_addr=("127.0.0.1", 0), reuse_address=True)
    with pytest.warns(DeprecationWarning, match="reuse_address"):
        t, p = endpoint(loop, lambda: Proto(loop),
                        local_addr=("127.0.0.1", 0), reuse_address=False)
    close_all(loop, p)


@pytest.mark.skipif(PY310, reason="3.10 still takes reuse_address")
def test_reuse_address_gone_from_311(loop):
    with pytest.raises(TypeError, match="reuse_address"):
        loop.run_until_complete(loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0),
            reuse_address=False))


def test_socket_options(loop):
    t, p = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    sock = t.get_extra_info("socket")
    assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
    assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    close_all(loop, p)

    t, p = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0),
                    remote_addr=("127.0.0.1", 9), reuse_port=True,
                    allow_broadcast=True)
    sock = t.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    # allow_broadcast: not connected, but sendto() defaults to remote_addr
    assert t.get_extra_info("peername") is None
    with pytest.raises(ValueError, match="Invalid address"):
        t.sendto(b"x", ("127.0.0.1", 10))
    close_all(loop, p)


def test_family_only_and_sock(loop):
    t, p = endpoint(loop, lambda: Proto(loop), family=socket.AF_INET)
    assert t.get_extra_info("socket").family == socket.AF_INET
    close_all(loop, p)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    t, p = endpoint(loop, lambda: Proto(loop), sock=sock)
    assert t.get_extra_info("sockname") == sock.getsockname()
    assert not sock.getblocking()
    close_all(loop, p)
    assert sock.fileno() == -1      # the transport closed it


def test_protocol_factory_error_closes_nothing_leaks(loop):
    def factory():
        raise ZeroDivisionError

    before = open_fds(loop)
    with pytest.raises(ZeroDivisionError):
        endpoint(loop, factory, local_addr=("127.0.0.1", 0))
    gc.collect()
    assert open_fds() == before


# ---- transport API ----

def test_extra_info_and_repr(loop):
    t, p = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    sock = t.get_extra_info("socket")
    assert isinstance(sock, asyncio.trsock.TransportSocket)
    assert t.get_extra_info("sockname") == sock.getsockname()
    assert t.get_extra_info("peername") is None
    assert t.get_extra_info("nothing") is None
    assert t.get_extra_info("nothing", 42) == 42
    assert t.get_extra_info(name="nothing", default=1) == 1
    r = repr(t)
    assert f"fd={sock.fileno()}" in r and "read=polling" in r
    assert "bufsize=0" in r
    assert t.get_protocol() is p
    p2 = Proto(loop)
    t.set_protocol(p2)
    assert t.get_protocol() is p2
    t.set_protocol(p)
    assert t.get_write_buffer_limits() == (16384, 65536)
    t.set_write_buffer_limits(high=100)
    assert t.get_write_buffer_limits() == (25, 100)
    t.set_write_buffer_limits(low=10)
    assert t.get_write_buffer_limits() == (10, 40)
    with pytest.raises(ValueError, match="must be >= low"):
        t.set_write_buffer_limits(high=1, low=2)
    close_all(loop, p)
    assert "closed" in repr(t)


def test_pause_resume_reading(loop):
    if PY310 and not is_fastloop(loop):
        pytest.skip("3.10's datagram transport has no pause_reading()")
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    ct, client = endpoint(loop, lambda: Proto(loop),
                          remote_addr=st.get_extra_info("sockname"))
    assert st.is_reading()
    st.pause_reading()
    assert not st.is_reading()
    ct.sendto(b"a")
    run(loop, asyncio.sleep(0.05))
    assert server.received == []
    st.resume_reading()
    assert st.is_reading()
    run(loop, server.wait_datagrams(1))
    st.close()
    assert not st.is_reading()
    close_all(loop, client, server)


def test_context_of_callbacks(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    class P(Proto):
        def connection_made(self, transport):
            super().connection_made(transport)
            seen.append(("made", var.get()))

        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            seen.append(("data", var.get()))
            var.set("changed by callback")

        def connection_lost(self, exc):
            seen.append(("lost", var.get()))
            super().connection_lost(exc)

    async def main():
        var.set("creator")
        t, p = await loop.create_datagram_endpoint(
            lambda: P(loop), local_addr=("127.0.0.1", 0))
        var.set("creator, later")
        return t, p

    t, p = run(loop, main())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", t.get_extra_info("sockname"))
    s.close()
    run(loop, p.wait_datagrams(1))
    close_all(loop, p)
    assert seen[0] == ("made", "creator")
    assert seen[1] == ("data", "creator")
    assert seen[2][0] == "lost"
    assert var.get() == "unset"     # nothing leaked into the caller


# ---- flow control: a Unix datagram receiver that does not read makes
# sendto() block, which a UDP socket on loopback never does ----

class Flow(Proto):
    def __init__(self, loop):
        super().__init__(loop)
        self.flow = []

    def pause_writing(self):
        self.flow.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.flow.append(("resume", self.transport.get_write_buffer_size()))


@pytest.fixture
def blocked(loop, tmpdir_path):
    """(transport, protocol, receiver): a connected Unix datagram endpoint
    whose peer reads only when the test says so."""
    path = os.path.join(tmpdir_path, "receiver")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    t, p = endpoint(loop, lambda: Flow(loop), remote_addr=path,
                    family=socket.AF_UNIX)
    yield t, p, receiver
    if not t.is_closing():
        t.abort()
    receiver.close()


def _fill(t, data, limit=100000):
    n = 0
    while t.get_write_buffer_size() == 0 and n < limit:
        t.sendto(data)
        n += 1
    assert t.get_write_buffer_size() > 0, "the kernel never pushed back"
    return n - 1    # the last one is in the buffer


def _drain(loop, receiver, until, bufsize=1000):
    got = []

    async def drain():
        while not until(got):
            try:
                got.append(receiver.recv(bufsize))
            except BlockingIOError:
                await asyncio.sleep(0.001)

    run(loop, drain())
    while True:     # and what else is there
        try:
            got.append(receiver.recv(bufsize))
        except BlockingIOError:
            return got


def test_flow_control_and_drain(loop, blocked):
    t, p, receiver = blocked
    t.set_write_buffer_limits(high=3 * (100 + HEADER), low=100)
    sent = _fill(t, b"x" * 100)
    assert t.get_write_buffer_size() == 100 + HEADER
    assert p.flow == []
    t.sendto(b"y" * 100)
    t.sendto(b"z" * 100)
    assert t.get_write_buffer_size() == 3 * (100 + HEADER)
    t.sendto(b"w" * 100)
    assert p.flow == [("pause", 4 * (100 + HEADER))]
    assert "write=<polling" in repr(t)
    got = _drain(loop, receiver, lambda got: len(got) == sent + 4)
    run(loop, asyncio.sleep(0.01))
    if PY313 and not is_fastloop(loop):
        pass    # 3.13.0 adds 8 per datagram buffered but subtracts 0 (fixed later)
    else:
        assert t.get_write_buffer_size() == 0
        assert p.flow[1][1] <= 100
    assert p.flow[1][0] == "resume"
    assert got[-4:] == [b"x" * 100, b"y" * 100, b"z" * 100, b"w" * 100]
    assert len(p.flow) == 2
    close_all(loop, p)


def test_close_with_buffer_drains_first(loop, blocked):
    t, p, receiver = blocked
    sent = _fill(t, b"d" * 50)
    t.close()
    assert t.is_closing()
    run(loop, asyncio.sleep(0.02))
    assert p.lost == []     # waits for the buffer
    got = _drain(loop, receiver, lambda got: p.lost)
    assert len(got) == sent + 1
    assert p.lost == [None]


def test_abort_discards_buffer(loop, blocked):
    t, p, receiver = blocked
    sent = _fill(t, b"d" * 50)
    t.abort()
    run(loop, p.done)
    assert p.lost == [None]
    assert t.get_extra_info("socket").fileno() == -1
    got = _drain(loop, receiver, lambda got: True)
    assert len(got) == sent


def test_buffered_data_is_a_copy(loop, blocked):
    t, p, receiver = blocked
    sent = _fill(t, b"f" * 10)
    data = bytearray(b"original")
    t.sendto(data)
    data[:] = b"mutated!"
    got = _drain(loop, receiver, lambda got: len(got) == sent + 2)
    assert got[-1] == b"original"
    close_all(loop, p)


# ---- Unix datagram endpoints ----

def test_unix_datagram(loop, tmpdir_path):
    spath = os.path.join(tmpdir_path, "server")
    cpath = os.path.join(tmpdir_path, "client")
    st, server = endpoint(loop, lambda: Echo(loop), local_addr=spath,
                          family=socket.AF_UNIX)
    assert st.get_extra_info("sockname") == spath
    ct, client = endpoint(loop, lambda: Proto(loop), local_addr=cpath,
                          remote_addr=spath, family=socket.AF_UNIX)
    assert ct.get_extra_info("peername") == spath
    ct.sendto(b"hi")
    run(loop, client.wait_datagrams(1))
    assert server.received == [(b"hi", cpath)]
    assert client.received == [(b"re:hi", spath)]

    # an unbound sender has no address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"anon", spath)
    run(loop, server.wait_datagrams(2))
    assert server.received[1] == (b"anon", None)
    close_all(loop, client, server)

    # a stale socket file is replaced
    st, server = endpoint(loop, lambda: Proto(loop), local_addr=spath,
                          family=socket.AF_UNIX)
    close_all(loop, server)


def test_unix_datagram_abstract(loop):
    name = b"\0fastloop-test-%d" % os.getpid()
    st, server = endpoint(loop, lambda: Echo(loop), local_addr=name.decode(),
                          family=socket.AF_UNIX)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0fastloop-peer-%d" % os.getpid())
        s.settimeout(5)
        s.sendto(b"x", name)
        run(loop, server.wait_datagrams(1))
        run(loop, asyncio.sleep(0.01))
        assert s.recvfrom(100) == (b"re:x", name)
    assert server.received == [(b"x", b"\0fastloop-peer-%d" % os.getpid())]
    close_all(loop, server)


def test_unix_family_only(loop):
    t, p = endpoint(loop, lambda: Proto(loop), family=socket.AF_UNIX)
    assert t.get_extra_info("socket").family == socket.AF_UNIX
    close_all(loop, p)


# ---- resources ----

def test_no_fd_leak(loop, tmpdir_path):
    before = open_fds(loop)
    for i in range(20):
        st, server = endpoint(loop, lambda: Echo(loop),
                              local_addr=("127.0.0.1", 0))
        ct, client = endpoint(loop, lambda: Proto(loop),
                              remote_addr=st.get_extra_info("sockname"))
        ct.sendto(b"x")
        run(loop, client.wait_datagrams(1))
        if i % 2:
            ct.abort()
        close_all(loop, client, server)
        ut, unix = endpoint(loop, lambda: Proto(loop),
                            local_addr=os.path.join(tmpdir_path, "u%d" % i),
                            family=socket.AF_UNIX)
        close_all(loop, unix)
    del st, ct, ut, server, client, unix
    gc.collect()
    assert open_fds() == before


def test_loop_closed_with_open_transport(loop_factory):
    lp = loop_factory()
    before = open_fds()
    t, p = lp.run_until_complete(lp.create_datagram_endpoint(
        lambda: Proto(lp), local_addr=("127.0.0.1", 0)))
    lp.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del t, p
        gc.collect()
    asyncio.set_event_loop(None)
    assert open_fds() <= before
    coro = lp.create_datagram_endpoint(asyncio.DatagramProtocol,
                                       local_addr=("127.0.0.1", 0))
    with pytest.raises(RuntimeError, match="closed"):
        lp.run_until_complete(coro)
    coro.close()


def test_unclosed_transport_warns(loop):
    t, p = endpoint(loop, lambda: Proto(loop), local_addr=("127.0.0.1", 0))
    fd = t.get_extra_info("socket").fileno()
    loop.close()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del t, p
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
