"""Connections, servers and TLS: the cold, per-connection orchestration.

The per-event work lives in C: `_core.StreamTransport` (src/stream.c) moves
the bytes and `_core.Listener` (src/server.c) accepts connections. What asyncio already
does well once per connection stays asyncio's own code: address
resolution, happy eyeballs, socket options, the Server object, and TLS's
handshake and shutdown (fastloop._tls: asyncio's sslproto with its
per-record path in C, stacked on our transport).
Those methods are taken from asyncio's loops as functions, so every Python
version keeps its own exact arguments, checks and messages; this module
gives them the hooks they call (`_make_socket_transport`,
`_make_ssl_transport`, `_start_serving`, `_stop_serving`, `sock_connect`).

The functions at the end are the reports the C code calls on cold paths.
"""
import contextvars
import errno
import functools
import os
import sys

from asyncio import (base_events, constants, selector_events,
                     trsock, unix_events)
from asyncio.log import logger

from . import _core, _tls

_Base = base_events.BaseEventLoop
_Selector = selector_events.BaseSelectorEventLoop
_Unix = unix_events._UnixSelectorEventLoop

_PY311 = sys.version_info >= (3, 11)
_PY313 = sys.version_info >= (3, 13)
_PY315 = sys.version_info >= (3, 15)

StreamTransport = _core.StreamTransport
# start_tls() accepts a transport that says so; loop.sendfile() tries
# os.sendfile() on its socket first (fastloop._sendfile). An SSL
# connection's transport is asyncio's own, which says FALLBACK.
StreamTransport._start_tls_compatible = True
StreamTransport._sendfile_compatible = constants._SendfileMode.TRY_NATIVE


class NetworkMixin:
    """Loop methods for TCP and Unix stream connections and servers."""

    @functools.cached_property
    def _fl_transports(self):
        """Every transport not yet closed: the loop keeps them alive, as
        asyncio's selector does through their reader callbacks."""
        return set()

    @functools.cached_property
    def _transports(self):
        """asyncio's fd -> transport map, kept by the transports' C code
        (src/fdowner.c): add_reader & co. and the sock_* methods refuse an
        fd that an open transport owns."""
        return {}

    @functools.cached_property
    def _fl_listeners(self):
        """Listening socket -> its Listener, while serving."""
        return {}

    @functools.cached_property
    def _fl_serving_contexts(self):
        """Listening socket -> the context its connections run in copies
        of (3.15: the Server's, copied when it was made; before: the one
        current when serving started)."""
        return {}

    @functools.cached_property
    def _unix_server_sockets(self):
        """3.13's cleanup_socket: Unix server socket -> inode of its path."""
        return {}

    create_connection = _Base.create_connection
    create_server = _Base.create_server
    connect_accepted_socket = _Base.connect_accepted_socket
    start_tls = _tls.uses_our_sslproto(_Base.start_tls)
    _ensure_resolved = _Base._ensure_resolved
    _create_server_getaddrinfo = _Base._create_server_getaddrinfo
    _connect_sock = _Base._connect_sock
    _create_connection_transport = _Base._create_connection_transport
    _accept_connection2 = _Selector._accept_connection2
    create_unix_connection = _Unix.create_unix_connection
    create_unix_server = _Unix.create_unix_server

    # ---- the hooks asyncio's code above calls ----

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None, context=None):
        return _new_transport(context, self, sock, protocol, waiter, extra,
                              server)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None,
                            *, server_side=False, server_hostname=None,
                            extra=None, server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            context=None, **kwargs):
        ssl_protocol = _tls.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout, **kwargs)
        _new_transport(context, self, rawsock, ssl_protocol, None, extra,
                       server)
        return ssl_protocol._app_transport

    def _start_serving(self, protocol_factory, sock, sslcontext=None,
                       server=None, backlog=100,
                       ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout=getattr(
                           constants, "SSL_SHUTDOWN_TIMEOUT", None),
                       context=None):
        self._check_closed()
        old = self._fl_listeners.pop(sock, None)
        if old is not None:
            old.stop()
        # 3.15's Server passes the context copied when it was made: each
        # connection (its protocol factory, its transport's callbacks, a
        # TLS connection's accept task) runs in a copy of it.  Earlier
        # versions: the context current now, as asyncio's reader handle
        # for the listening socket captures it.
        if context is None:
            context = contextvars.copy_context()
        # The C Listener keeps a copy of the context current when it is
        # made, and runs each plain connection in a copy of that.
        listener = context.copy().run(
            _core.Listener, self, sock, protocol_factory, sslcontext, server,
            backlog, ssl_handshake_timeout, ssl_shutdown_timeout)
        listener.start()
        self._fl_listeners[sock] = listener
        self._fl_serving_contexts[sock] = context

    def _stop_serving(self, sock):
        path = None
        if sock in self._unix_server_sockets:
            path = sock.getsockname()
        self._fl_serving_contexts.pop(sock, None)
        listener = self._fl_listeners.pop(sock, None)
        if listener is not None:
            listener.stop()     # before the fd goes: libev must not watch it
        sock.close()
        if path is not None:
            prev_ino = self._unix_server_sockets.pop(sock)
            try:
                if os.stat(path).st_ino == prev_ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error('Unable to clean up listening UNIX socket '
                             '%r: %r', path, err)


def _new_transport(context, *args):
    """StreamTransport(*args) whose callbacks run in `context` (3.15's
    context= of _make_socket_transport/_make_ssl_transport), or in a copy
    of the current context when it is None.  The C transport keeps a copy
    of the context current when it is made: made inside a copy of
    `context`, it runs in the same values (a copy, because the context
    may be entered already: a TLS accept task runs in it)."""
    if context is None:
        return StreamTransport(*args)
    return context.copy().run(StreamTransport, *args)


def _report_callback_error(loop, message, exc, transport, protocol):
    loop.call_exception_handler({
        'message': message,
        'exception': exc,
        'transport': transport,
        'protocol': protocol,
    })


def _report_read_pipe_fatal_error(loop, transport, protocol, message, exc):
    """_UnixReadPipeTransport._fatal_error's report: only EIO (a pty whose
    other side closed) is quiet."""
    if isinstance(exc, OSError) and exc.errno == errno.EIO:
        if loop.get_debug():
            logger.debug("%r: %s", transport, message, exc_info=True)
    else:
        _report_callback_error(loop, message, exc, transport, protocol)


def _log_debug(fmt, obj):
    logger.debug(fmt, obj)


def _accept_error(loop, listener, exc):
    sock = listener.sock
    if isinstance(exc, OSError) and exc.errno in (
            errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
            errno.ENOSPC):
        # Linux keeps reporting the socket readable: stop watching it for
        # a while, then accept again (fds may have been freed by then).
        # ENOSPC: the loop could not watch the socket at all (epoll's
        # max_user_watches); retried the same way.
        loop.call_exception_handler({
            'message': 'socket.accept() out of system resource',
            'exception': exc,
            'socket': trsock.TransportSocket(sock),
        })
        listener._pause()
        loop.call_later(constants.ACCEPT_RETRY_DELAY, listener._resume)
        return
    loop.call_exception_handler({
        'message': 'Error on accepting a connection',
        'exception': exc,
        'socket': trsock.TransportSocket(sock),
    })


def _accept_failed(loop, exc, protocol, listener):
    if loop.get_debug():
        context = {
            'message': 'Error on transport creation for incoming connection',
            'exception': exc,
        }
        if protocol is not None:
            context['protocol'] = protocol
        loop.call_exception_handler(context)


def _accept_ssl(loop, listener, conn, addr):
    if loop.get_debug():
        logger.debug("%r got a new connection from %r: %r",
                     listener.server, addr, conn)
    args = [listener.protocol_factory, conn, {'peername': addr},
            listener.sslcontext, listener.server,
            listener.ssl_handshake_timeout]
    if _PY311:
        args.append(listener.ssl_shutdown_timeout)
    # As asyncio's _accept_connection: the accept task (the protocol
    # factory, the handshake) runs in a copy of the serving context, and
    # on 3.15 the transport's callbacks in that same copy.
    context = loop._fl_serving_contexts.get(listener.sock)
    if context is None:
        loop.create_task(loop._accept_connection2(*args))
        return
    conn_context = context.copy()
    if _PY315:
        accept = loop._accept_connection2(*args, context=conn_context)
    else:
        accept = loop._accept_connection2(*args)
    if _PY311:
        loop.create_task(accept, context=conn_context)
    else:
        conn_context.run(loop.create_task, accept)
