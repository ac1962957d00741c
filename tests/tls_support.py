"""Helpers for the TLS tests (not a test module).

Certificates are CPython's own test certificates (``test.test_asyncio.utils``):
ONLYCERT/ONLYKEY is a self-signed 'localhost' certificate, SIGNED_CERTFILE a
'localhost' certificate signed by SIGNING_CA.

``RawPeer`` is a TLS peer that is *not* an event loop: a thread with a
blocking socket that drives an ``ssl.SSLObject`` over ``MemoryBIO``s by
hand, so a test can make it misbehave at the byte level (stop answering,
close without close_notify, reset in the middle of a record), which no
asyncio transport can be told to do.
"""
import asyncio
import gc
import hashlib
import os
import socket
import ssl
import struct
import threading

import pytest

from fl_support import Recorder

test_utils = pytest.importorskip("test.test_asyncio.utils")

# How long a RawPeer thread waits on its socket before giving up: a test
# that goes wrong ends the thread instead of leaving it blocked.
PEER_TIMEOUT = 15


def server_ctx():
    """A server context with the self-signed 'localhost' certificate."""
    return test_utils.simple_server_sslcontext()


def client_ctx():
    """A client context that verifies nothing (use server_hostname='')."""
    return test_utils.simple_client_sslcontext()


def signed_server_ctx():
    """A server context with the CA-signed 'localhost' certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(test_utils.SIGNED_CERTFILE)
    return ctx


def verifying_client_ctx():
    """A client context that trusts SIGNING_CA and checks the hostname."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(test_utils.SIGNING_CA)
    return ctx


def payload(size, seed=b"fastloop"):
    """`size` deterministic, non-repeating bytes (a SHA-256 chain)."""
    out = bytearray()
    block = seed
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def reset_close(sock):
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


class BioConn:
    """One side of a TLS connection over a blocking socket, by hand."""

    def __init__(self, sock, ctx, server_side, server_hostname=None):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing,
                                server_side=server_side,
                                server_hostname=server_hostname)

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _feed(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("peer closed during the exchange")
        self.incoming.write(data)

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self._feed()
        self.flush()

    def encrypt(self, data):
        """The TLS records of `data`, not sent."""
        self.obj.write(data)
        return self.outgoing.read()

    def send(self, data):
        self.sock.sendall(self.encrypt(data))

    def recv_exactly(self, n):
        """Decrypt until n bytes of application data arrived."""
        got = bytearray()
        while len(got) < n:
            try:
                got += self.obj.read(n - len(got))
            except ssl.SSLWantReadError:
                self.flush()        # TLS 1.3 may answer key updates
                self._feed()
        return bytes(got)


class RawPeer:
    """A thread that runs ``script(sock, peer)`` on one connection: the one
    it accepts on its own listening socket (``addr``), or, with
    ``connect_to``, the one it makes to that address.  join() re-raises
    the script's exception, or returns its result."""

    def __init__(self, script, connect_to=None):
        self.listener = None
        self.connect_to = connect_to
        if connect_to is None:
            self.listener = socket.socket()
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(1)
            self.listener.settimeout(PEER_TIMEOUT)
            self.addr = self.listener.getsockname()
        self.script = script
        self.error = None
        self.result = None
        self.release = threading.Event()    # a script may wait for it
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            if self.listener is not None:
                conn, _ = self.listener.accept()
            else:
                conn = socket.create_connection(self.connect_to, PEER_TIMEOUT)
            conn.settimeout(PEER_TIMEOUT)
            try:
                self.result = self.script(conn, self)
            finally:
                if conn.fileno() >= 0:
                    conn.close()
        except BaseException as exc:
            self.error = exc

    def join(self):
        self.release.set()
        self.thread.join(PEER_TIMEOUT + 5)
        if self.listener is not None:
            self.listener.close()
        assert not self.thread.is_alive(), "the raw peer thread hangs"
        if self.error is not None:
            raise self.error
        return self.result


async def tls_pair(loop, server_proto=None, client_proto=None, *,
                   sctx=None, cctx=None, hostname="", **client_kw):
    """A TLS server on the loop and a client connected to it.

    Returns (server protocol, client protocol, server); the protocols are
    Recorders unless factories are given."""
    srv_protos = []

    def make_server_proto():
        p = (server_proto or (lambda: Recorder(loop)))()
        srv_protos.append(p)
        return p

    server = await loop.create_server(make_server_proto, "127.0.0.1", 0,
                                      ssl=sctx or server_ctx())
    addr = server.sockets[0].getsockname()
    _, cli = await loop.create_connection(
        client_proto or (lambda: Recorder(loop)), *addr,
        ssl=cctx or client_ctx(), server_hostname=hostname, **client_kw)
    while not srv_protos or srv_protos[0].transport is None:
        await asyncio.sleep(0.001)
    return srv_protos[0], cli, server


async def close_all(server, *protos):
    for p in protos:
        p.transport.close()
    for p in protos:
        await asyncio.wait_for(p.lost, 10)
    server.close()
    await server.wait_closed()


def buffered_recorder(loop, echo=False, size=1000, view=True):
    """A Recorder that is a BufferedProtocol with a small buffer."""
    return BufferedRecorder(loop, echo, size, view)


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """get_buffer returns a memoryview by default.  asyncio's sslproto
    (3.11-3.15) fills the rest of the buffer through ``buf[offset:]``,
    which for a bytearray is a copy: bytes are lost where a read crosses
    a TLS record (test_buffered_protocol_bytearray_buffer)."""

    def __init__(self, loop, echo=False, size=1000, view=True):
        super().__init__(loop, echo)
        self.buf = bytearray(size)
        self.view = memoryview(self.buf) if view else self.buf
        self.hints = []

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return self.view

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self._got(bytes(self.buf[:nbytes]))


def open_fds(loop):
    """Open fds, once the loop has run (it makes its own fds lazily) and
    collected garbage (a leaked transport holds its socket)."""
    loop.run_until_complete(asyncio.sleep(0))
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class PausesAfterEachDelivery:
    """Mixed into a Recorder kind: pauses reading after each delivery and
    resumes `resume_after` seconds later, counting the pauses and any
    delivery that arrives while paused."""

    resume_after = 0.02
    paused = False
    pauses = 0
    delivered_while_paused = 0

    def _got(self, data):
        if self.paused:
            self.delivered_while_paused += 1
        super()._got(data)
        if not self.paused:
            self.paused = True
            self.pauses += 1
            self.transport.pause_reading()
            assert not self.transport.is_reading()
            self.loop.call_later(self.resume_after, self.resume)

    def resume(self):
        if self.transport.is_closing():
            return
        self.paused = False
        self.transport.resume_reading()
        assert self.transport.is_reading()
