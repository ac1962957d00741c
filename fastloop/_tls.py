"""TLS connections: asyncio's sslproto, with the per-record path in C.

`SSLProtocol` stands on two bases: `_core.TLSProtocol` (src/transports/
tls.c) owns the hot methods (ciphertext in, plaintext out to the app
protocol, app writes encrypted and handed to the stream transport, flow
control at the water marks), and asyncio's own `sslproto.SSLProtocol`
keeps everything else (handshake, shutdown, their timeouts, errors,
get_extra_info, abort) exactly as each Python version has it. The
attributes both share are C fields behind asyncio's names.

`SSLTransport` is the application's transport: asyncio's
`_SSLProtocolTransport`, whose write() and writelines() are C
(`_core.TLSTransport`).

The stream transport hands an `SSLProtocol` its received bytes in C (no
get_buffer()/buffer_updated() calls through Python) and the protocol writes
ciphertext to the stream transport in C: no Python code runs per record.

The ssl module is imported only when a connection needs it: importing
fastloop does not need ssl.
"""
import types

from asyncio import sslproto

from . import _core


class SSLTransport(_core.TLSTransport, sslproto._SSLProtocolTransport):
    """asyncio's _SSLProtocolTransport with write()/writelines() in C."""


class SSLProtocol(_core.TLSProtocol, sslproto.SSLProtocol):
    """asyncio's SSLProtocol with the per-record methods in C."""

    # asyncio's __init__ makes (and zero-fills) a max_size buffer per
    # connection for get_buffer(). The C get_buffer() and reads use one
    # scratch buffer per loop instead, so the per-connection one is empty;
    # every method of asyncio's that reads max_size is overridden in C.
    max_size = 0

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = SSLTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport


def uses_our_sslproto(func):
    """asyncio's `func`, with its global `sslproto.SSLProtocol` resolving
    to ours (the rest of its globals are its module's): every Python
    version keeps its own code, checks and messages."""
    ours = types.ModuleType(sslproto.__name__)
    ours.__dict__.update(vars(sslproto))
    ours.SSLProtocol = SSLProtocol
    namespace = dict(func.__globals__)
    namespace['sslproto'] = ours
    copy = types.FunctionType(func.__code__, namespace, func.__name__,
                              func.__defaults__, func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    copy.__doc__ = func.__doc__
    return copy
