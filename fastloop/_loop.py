"""fastloop.Loop: the C core plus the cold, per-run orchestration in Python."""
import asyncio
import errno
import ipaddress
import signal
import socket
import sys
import threading
import weakref
from asyncio import base_events, coroutines, events
from asyncio.log import logger

from . import _core, _datagram, _helpers, _network, _pipes, _sendfile, _sock

_Base = base_events.BaseEventLoop
# 3.14 deprecated the public asyncio.iscoroutinefunction; asyncio itself
# calls the private one, which older versions lack.
_iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction",
                               coroutines.iscoroutinefunction)


def _noop_signal_handler(signum, frame):
    """Installed for signals the loop handles: the wakeup fd does the work."""


class Loop(_core.LoopCore, _sock.SockMethods, _sendfile.SendfileMixin,
           _network.NetworkMixin, _datagram.DatagramMixin, _pipes.PipesMixin,
           asyncio.AbstractEventLoop):
    """An asyncio event loop whose hot paths run in C on libev."""

    def __init__(self):
        super().__init__()
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._old_agen_hooks = None
        self._signal_handlers = {}
        self._signal_socks = None       # (read, write) socketpair, made lazily
        self._saved_wakeup_fd = None    # the wakeup fd ours replaced, if set
        self.set_debug(coroutines._is_debug_mode())

    # asyncio's own implementations of the cold paths that only touch the
    # attributes above: taking them as they are keeps every Python version's
    # exact semantics and messages.
    run_until_complete = _Base.run_until_complete
    set_task_factory = _Base.set_task_factory
    get_task_factory = _Base.get_task_factory
    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler
    shutdown_asyncgens = _Base.shutdown_asyncgens
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    shutdown_default_executor = _Base.shutdown_default_executor
    _check_default_executor = _Base._check_default_executor
    _check_running = _Base._check_running
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking
    getnameinfo = _Base.getnameinfo
    _getaddrinfo_debug = _Base._getaddrinfo_debug
    __repr__ = _Base.__repr__
    if hasattr(_Base, "_do_shutdown"):
        _do_shutdown = _Base._do_shutdown

    def _check_callback(self, callback, method):
        _helpers.check_callback(callback, method)

    def set_debug(self, enabled):
        self._debug = bool(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking,
                                      enabled)

    # ---- running ----

    def run_forever(self):
        self._check_closed()
        self._check_running()
        # The set-up can fail half-way (the wakeup socketpair when no
        # descriptor is free): the clean-up undoes what it did, or the loop
        # would stay "running" for good.
        try:
            self._run_forever_setup()
            self._run()
        finally:
            self._run_forever_cleanup()

    def _run_forever_setup(self):
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        events._set_running_loop(self)
        if threading.current_thread() is threading.main_thread():
            # So that Ctrl-C wakes a loop sleeping in epoll at once.
            self._install_wakeup_fd()

    def _run_forever_cleanup(self):
        self._stopping = False
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None
        self._release_wakeup_fd()

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            logger.debug("Close %r", self)
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._fl_release_children()
        self._close_core()
        # Transports still open are no longer kept alive by a loop that
        # will never run them again (asyncio's selector is gone too).
        self.__dict__.pop("_fl_transports", None)
        self.__dict__.pop("_transports", None)
        self._release_wakeup_fd()
        if self._signal_socks is not None:
            for sock in self._signal_socks:
                sock.close()
            self._signal_socks = None
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def __del__(self, _warn=__import__("warnings").warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # ---- name resolution ----

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0,
                          flags=0):
        numeric = _numeric_addrinfo(host, port, family, type, proto, flags)
        if numeric is not None:
            self._check_closed()
            return numeric
        resolve = self._getaddrinfo_debug if self._debug else socket.getaddrinfo
        return await self.run_in_executor(None, resolve, host, port, family,
                                          type, proto, flags)

    # ---- signals ----

    def _signal_socket_pair(self):
        if self._signal_socks is None:
            rsock, wsock = socket.socketpair()
            try:
                rsock.setblocking(False)
                wsock.setblocking(False)
                self.add_reader(rsock.fileno(), self._read_signals)
            except BaseException:
                rsock.close()
                wsock.close()
                raise
            self._signal_socks = (rsock, wsock)
        return self._signal_socks

    def _install_wakeup_fd(self):
        """Point Python's signal wakeup fd at our socket (main thread only)."""
        if self._saved_wakeup_fd is not None:
            return
        wsock = self._signal_socket_pair()[1]
        self._saved_wakeup_fd = signal.set_wakeup_fd(wsock.fileno(),
                                                     warn_on_full_buffer=False)

    def _release_wakeup_fd(self):
        """Give the wakeup fd back once neither a run nor a handler needs it."""
        if (self._saved_wakeup_fd is None or self.is_running()
                or (self._signal_handlers and not self.is_closed())):
            return
        try:
            signal.set_wakeup_fd(self._saved_wakeup_fd)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(%s) failed: %s", self._saved_wakeup_fd, exc)
        self._saved_wakeup_fd = None

    def _read_signals(self):
        rsock = self._signal_socks[0]
        while True:
            try:
                data = rsock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                self._dispatch_signal(signum)

    def _dispatch_signal(self, signum):
        handle = self._signal_handlers.get(signum)
        if handle is None:
            return
        if handle.cancelled():
            self.remove_signal_handler(signum)
        else:
            self._add_callback(handle)

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args):
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if threading.current_thread() is not threading.main_thread():
            # What signal.set_wakeup_fd() says, as asyncio reports it.
            raise RuntimeError("set_wakeup_fd only works in main thread "
                               "of the main interpreter")
        try:
            self._install_wakeup_fd()
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        handle = _core.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _noop_signal_handler)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            self._release_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        self._release_wakeup_fd()
        return True


def _numeric_addrinfo(host, port, family, type, proto, flags):
    """getaddrinfo's answer for a numeric IP host, without a thread; None
    when the host needs the resolver."""
    if not isinstance(host, (str, bytes)) or flags & ~socket.AI_NUMERICHOST & ~socket.AI_PASSIVE:
        return None
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6 and "%" in host:
        return None     # scoped addresses need the resolver's if_nametoindex
    if family not in (0, socket.AF_INET if ip.version == 4 else socket.AF_INET6):
        return None     # let the resolver raise its own error
    # The kernel's answer for a numeric host is pure computation; asking it
    # directly is fast, exact (port names, type/proto expansion) and never
    # blocks on the network.
    try:
        return socket.getaddrinfo(host, port, family, type, proto,
                                  flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None
