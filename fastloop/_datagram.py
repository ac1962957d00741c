"""create_datagram_endpoint(): per-endpoint orchestration in Python.

Resolving, creating, binding and connecting the socket happen once per
endpoint and stay in Python; the transport that moves every datagram is C
(fastloop._core.DatagramTransport).  The argument checks, their order and
their messages follow asyncio's base_events of the running Python: 3.10
still takes (and refuses) reuse_address, 3.11 and 3.12 dropped it, 3.13
accepts any non-stream socket for sock=.
"""
import os
import socket
import stat
import sys
import warnings
from asyncio import base_events, trsock
from asyncio.log import logger

from . import _core

_unset = getattr(base_events, "_unset", object())


def _set_reuseport(sock):
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, "
                         "SO_REUSEPORT defined but not implemented.")


def _check_sock(sock):
    if sys.version_info >= (3, 13):
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(f"A datagram socket was expected, got {sock!r}")
    elif sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"A UDP Socket was expected, got {sock!r}")


def _check_addr_pair(addr):
    if sys.version_info < (3, 11):
        assert isinstance(addr, tuple) and len(addr) == 2, (
            "2-tuple is expected")
    elif not (isinstance(addr, tuple) and len(addr) == 2):
        raise TypeError("2-tuple is expected")


def _check_reuse_address(reuse_address):
    # bpo-37228, 3.10 only: the argument is refused or deprecated.
    if reuse_address is _unset:
        return
    if reuse_address:
        raise ValueError("Passing `reuse_address=True` is no "
                         "longer supported, as the usage of "
                         "SO_REUSEPORT in UDP poses a significant "
                         "security concern.")
    warnings.warn("The *reuse_address* parameter has been "
                  "deprecated as of 3.5.10 and is scheduled "
                  "for removal in 3.11.", DeprecationWarning,
                  stacklevel=4)     # create_datagram_endpoint's caller


def _remove_stale_unix_socket(path):
    if path[0] in (0, "\x00"):
        return      # Linux abstract namespace: nothing on disk
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        # The directory may only let us create the socket.
        logger.error("Unable to check or remove stale UNIX socket %r: %r",
                     path, err)


class DatagramMixin:
    """Loop mixin: create_datagram_endpoint and its transport."""

    def _make_datagram_transport(self, sock, protocol, address=None,
                                 waiter=None, extra=None):
        if extra is None:
            extra = {}
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        return _core.DatagramTransport(self, sock, protocol, address, waiter,
                                       extra)

    async def _datagram_addr_pairs(self, local_addr, remote_addr, family,
                                   proto, flags):
        """((family, proto), (local, remote)) candidates, as asyncio."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return (((family, proto), (None, None)),)
        if hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr:
                _remove_stale_unix_socket(local_addr)
            return (((family, proto), (local_addr, remote_addr)),)
        # join address by (family, protocol), in the resolver's order
        addr_infos = {}
        for idx, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            _check_addr_pair(addr)
            infos = await base_events.BaseEventLoop._ensure_resolved(
                self, addr, family=family, type=socket.SOCK_DGRAM,
                proto=proto, flags=flags, loop=self)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            for fam, _, pro, _, address in infos:
                addr_infos.setdefault((fam, pro), [None, None])[idx] = address
        # each address needs an entry for the (family, proto) pair
        pairs = [(key, pair) for key, pair in addr_infos.items()
                 if not ((local_addr and pair[0] is None)
                         or (remote_addr and pair[1] is None))]
        if not pairs:
            raise ValueError("can not get address information")
        return pairs

    async def _datagram_connect(self, sock, address):
        # A datagram connect() only sets the default peer: it never waits.
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            await self.sock_connect(sock, address)

    async def _datagram_open_socket(self, pairs, local_addr, remote_addr,
                                    reuse_port, allow_broadcast):
        exceptions = []
        for (family, proto), (local_address, remote_address) in pairs:
            sock = None
            r_addr = None
            try:
                sock = socket.socket(family=family, type=socket.SOCK_DGRAM,
                                     proto=proto)
                if reuse_port:
                    _set_reuseport(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                if remote_addr:
                    if not allow_broadcast:
                        await self._datagram_connect(sock, remote_address)
                    r_addr = remote_address
            except OSError as exc:
                if sock is not None:
                    sock.close()
                exceptions.append(exc)
            except:
                if sock is not None:
                    sock.close()
                raise
            else:
                return sock, r_addr
        raise exceptions[0]

    async def _create_datagram_endpoint(self, protocol_factory, local_addr,
                                        remote_addr, family, proto, flags,
                                        reuse_address, reuse_port,
                                        allow_broadcast, sock):
        if sock is not None:
            _check_sock(sock)
            if (local_addr or remote_addr or family or proto or flags
                    or reuse_port or allow_broadcast):
                # show the problematic kwargs in exception msg
                opts = dict(local_addr=local_addr, remote_addr=remote_addr,
                            family=family, proto=proto, flags=flags)
                if reuse_address is not None:
                    opts["reuse_address"] = reuse_address
                opts.update(reuse_port=reuse_port,
                            allow_broadcast=allow_broadcast)
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used "
                    f"when sock is specified. ({problems})")
            sock.setblocking(False)
            r_addr = None
        else:
            pairs = await self._datagram_addr_pairs(
                local_addr, remote_addr, family, proto, flags)
            if reuse_address is not None:
                _check_reuse_address(reuse_address)
            sock, r_addr = await self._datagram_open_socket(
                pairs, local_addr, remote_addr, reuse_port, allow_broadcast)

        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr,
                                                  waiter)
        if self._debug:
            if local_addr:
                logger.info("Datagram endpoint local_addr=%r remote_addr=%r "
                            "created: (%r, %r)",
                            local_addr, remote_addr, transport, protocol)
            else:
                logger.debug("Datagram endpoint remote_addr=%r created: "
                             "(%r, %r)", remote_addr, transport, protocol)
        try:
            await waiter
        except:
            transport.close()
            raise
        return transport, protocol

    if sys.version_info < (3, 11):
        async def create_datagram_endpoint(self, protocol_factory,
                                           local_addr=None, remote_addr=None,
                                           *, family=0, proto=0, flags=0,
                                           reuse_address=_unset,
                                           reuse_port=None,
                                           allow_broadcast=None, sock=None):
            """Create datagram connection."""
            return await self._create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family, proto,
                flags, reuse_address, reuse_port, allow_broadcast, sock)
    else:
        async def create_datagram_endpoint(self, protocol_factory,
                                           local_addr=None, remote_addr=None,
                                           *, family=0, proto=0, flags=0,
                                           reuse_port=None,
                                           allow_broadcast=None, sock=None):
            """Create datagram connection."""
            return await self._create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family, proto,
                flags, None, reuse_port, allow_broadcast, sock)
