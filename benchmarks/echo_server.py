"""The echo servers of the network benchmarks, one per asyncio API style.

    await start(style, loop, sock, tracker) -> a server with close() and
                                               async wait_closed()

Styles (STYLES): "protocol" (loop.create_server + Protocol.data_received),
"buffered" (BufferedProtocol.get_buffer/buffer_updated), "streams"
(asyncio.start_server, StreamReader.read / StreamWriter.write + drain) and
"sock" (loop.sock_accept / sock_recv / sock_sendall in a task per
connection). Each serves on a listening socket the caller made (so no
getaddrinfo, no executor thread) and echoes every byte back, the way a real
program of that style would: no tricks a loop could be tuned for.

With a TLS context (tls_server_context(): the self-signed certificate in
tls_cert.pem) the create_server styles serve over TLS; the connection
counts once its handshake is done.

The Tracker counts the server's open connections and collects the first
error any part of the server meets, so a loop that fails (a
NotImplementedError of a method not written yet included) ends the run with
that error instead of leaving the load client waiting.
"""
import asyncio
import os
import socket
import ssl

STYLES = ("protocol", "buffered", "streams", "sock")

# Bytes asked for per read in the styles where the program chooses it.
READ_SIZE = 64 * 1024
# Servers listen again with their own backlog (100 unless told): a burst of
# connections beyond it has SYNs dropped and retried a second later.
BACKLOG = 4096
# A self-signed certificate for 'localhost' and its key (RSA 2048), made
# for the benchmarks only.
TLS_CERT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_cert.pem")


def tls_server_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(TLS_CERT)
    return ctx


class Tracker:
    """Open connections of one server, and the first error it met."""

    def __init__(self, loop):
        self.loop = loop
        self.active = 0
        self.accepted = 0
        # Its result is the exception: set_exception on a future that may
        # never be awaited would log "exception was never retrieved".
        self.failure = loop.create_future()
        self._all_closed = None

    def opened(self):
        self.active += 1
        self.accepted += 1

    def closed(self):
        self.active -= 1
        if not self.active and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)

    def fail(self, exc):
        if not self.failure.done():
            self.failure.set_result(exc)

    def exception_handler(self, loop, context):
        """For loop.set_exception_handler: an error in a callback fails the run."""
        exc = context.get("exception")
        if exc is None:
            loop.default_exception_handler(context)
        else:
            self.fail(exc)

    def check(self):
        """Raise the server's first error, if it met one."""
        if self.failure.done():
            raise self.failure.result()

    async def all_closed(self, timeout):
        """Wait until the server has no connection left (or fail after timeout seconds)."""
        if self.active:
            self._all_closed = self.loop.create_future()
            await wait_either(self._all_closed, self, timeout,
                              f"{self.active} server connection(s) still open after {timeout:g} s")
        self.check()


async def wait_either(fut, tracker, timeout, what):
    """Wait for fut, but raise the server's error if it fails first, TimeoutError(what) on timeout."""
    done, _ = await asyncio.wait({fut, tracker.failure}, timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    tracker.check()
    if not done:
        raise TimeoutError(what)
    return fut.result()


# -- Protocol and BufferedProtocol --------------------------------------------

class EchoProtocol(asyncio.Protocol):
    def __init__(self, tracker):
        self.tracker = tracker
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.tracker.opened()

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.tracker.closed()


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    def __init__(self, tracker):
        self.tracker = tracker
        self.transport = None
        self.buffer = bytearray(READ_SIZE)

    def connection_made(self, transport):
        self.transport = transport
        self.tracker.opened()

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        # A copy: a transport may keep what it could not send yet, and the
        # next read reuses the buffer.
        self.transport.write(self.buffer[:nbytes])

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.tracker.closed()


async def _start_protocol(loop, sock, tracker, tls=None):
    return await loop.create_server(lambda: EchoProtocol(tracker), sock=sock, backlog=BACKLOG,
                                    ssl=tls)


async def _start_buffered(loop, sock, tracker, tls=None):
    return await loop.create_server(lambda: EchoBufferedProtocol(tracker), sock=sock,
                                    backlog=BACKLOG, ssl=tls)


# -- streams ------------------------------------------------------------------

async def _start_streams(loop, sock, tracker, tls=None):
    async def handle(reader, writer):
        tracker.opened()
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except Exception as exc:
            tracker.fail(exc)
        finally:
            writer.close()
            tracker.closed()

    return await asyncio.start_server(handle, sock=sock, backlog=BACKLOG, ssl=tls)


# -- sock_* -------------------------------------------------------------------

class SockServer:
    """An accept task and a task per connection, on the loop's sock_* methods."""

    def __init__(self, loop, sock, tracker):
        self.loop = loop
        self.sock = sock
        self.tracker = tracker
        self.handlers = set()
        self.acceptor = loop.create_task(self._accept())
        self.acceptor.add_done_callback(self._acceptor_done)

    def _acceptor_done(self, task):
        if not task.cancelled() and task.exception() is not None:
            self.tracker.fail(task.exception())

    async def _accept(self):
        while True:
            conn, _ = await self.loop.sock_accept(self.sock)
            conn.setblocking(False)
            # What every asyncio transport does; without it small echoes wait
            # for the peer's delayed ACK.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self.loop.create_task(self._serve(conn))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    async def _serve(self, conn):
        self.tracker.opened()
        try:
            while True:
                data = await self.loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await self.loop.sock_sendall(conn, data)
        except Exception as exc:
            self.tracker.fail(exc)
        finally:
            conn.close()
            self.tracker.closed()

    def close(self):
        # Connections still open here (only after a failure) are cancelled;
        # each closes its own socket.
        for task in [self.acceptor, *self.handlers]:
            task.cancel()

    async def wait_closed(self):
        await asyncio.gather(self.acceptor, *self.handlers, return_exceptions=True)
        self.sock.close()


async def _start_sock(loop, sock, tracker, tls=None):
    if tls is not None:
        raise ValueError("the sock style has no TLS")
    server = SockServer(loop, sock, tracker)
    # A loop without sock_accept fails on the accept task's first step: say
    # so now rather than after the client has connected.
    await asyncio.sleep(0)
    tracker.check()
    return server


_STARTERS = {
    "protocol": _start_protocol,
    "buffered": _start_buffered,
    "streams": _start_streams,
    "sock": _start_sock,
}


async def start(style, loop, sock, tracker, tls=None):
    """Serve echo on the listening socket `sock` in the given style (over
    TLS with an SSLContext)."""
    return await _STARTERS[style](loop, sock, tracker, tls=tls)


def listening_socket(backlog=BACKLOG):
    """A non-blocking TCP socket listening on 127.0.0.1, on a port the kernel picks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        # The kernel caps the backlog at net.core.somaxconn.
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
