"""loop.sendfile(): a file sent through a transport.

asyncio's own BaseEventLoop.sendfile() and its fallback (read the file in
an executor, write through the transport, wait on flow control) are taken
as they are, so every Python version keeps its checks and messages. The
native path is the selector loop's: pause reading, wait until the
transport's write buffer has drained (the "empty waiter", which also makes
write() refuse with "sendfile is in progress"), then hand the socket to
sock_sendfile(), whose os.sendfile() loop runs in C (src/sock.c). While it
runs the transport's fd is taken out of the loop's fd -> transport map, as
asyncio does, so that sock_sendfile may watch it.
"""
from asyncio import base_events

_Base = base_events.BaseEventLoop


class SendfileMixin:
    """Mixin for fastloop.Loop: loop.sendfile()."""

    sendfile = _Base.sendfile
    _sendfile_fallback = _Base._sendfile_fallback

    async def _sendfile_native(self, transp, file, offset, count):
        fd = transp._sock_fd
        if self._transports.get(fd) is transp:
            del self._transports[fd]
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count,
                                            fallback=False)
        finally:
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()
            # Unless the transport lost its socket meanwhile (then its fd
            # may already belong to someone else).
            if transp._sock_fd == fd and not self.is_closed():
                self._transports[fd] = transp
