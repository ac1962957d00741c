"""The cold parts of the loop.sock_* methods.

sock_recv, sock_recv_into, sock_recvfrom, sock_recvfrom_into, sock_sendall,
sock_sendto and sock_accept are C methods of LoopCore (src/sock.c).  What is
here runs once per call before the C part takes over: name resolution for
sock_connect, and sock_sendfile's argument checks and fallback, as asyncio's
BaseEventLoop and unix selector loop do them.
"""
import io
import os
import socket
from asyncio import base_events, exceptions

_Base = base_events.BaseEventLoop


class SockMethods:
    """Mixin for fastloop.Loop: sock_connect and sock_sendfile."""

    _ensure_resolved = _Base._ensure_resolved
    _check_sendfile_params = _Base._check_sendfile_params
    _sock_sendfile_fallback = _Base._sock_sendfile_fallback

    async def sock_connect(self, sock, address):
        """Connect sock to a remote socket at address."""
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.family == socket.AF_INET or (
                base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto,
                loop=self)
            address = resolved[0][4]
        return await self._sock_connect_op(sock, address)

    async def sock_sendfile(self, sock, file, offset=0, count=None,
                            *, fallback=True):
        """Send a file through sock, with os.sendfile() when possible."""
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        base_events._check_ssl_socket(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        if not hasattr(os, "sendfile"):
            raise exceptions.SendfileNotAvailableError(
                "os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # empty file
        return await self._sock_sendfile_op(sock, fileno, offset, count or 0,
                                            blocksize)
