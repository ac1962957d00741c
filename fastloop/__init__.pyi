# Types of the fastloop package. tests/test_stubs.py checks these names
# against the runtime module (both ways) and mypy --strict checks them, with
# tests/typing_example.py, against typeshed's asyncio.
import asyncio
import sys
from collections.abc import Coroutine
from contextvars import Context
from typing import Any, TypeVar

from typing_extensions import deprecated

from ._core import Future as Future
from ._core import Handle as Handle
from ._core import LoopCore
from ._core import Task as Task
from ._core import TimerHandle as TimerHandle
from ._version import __version__ as __version__

_T = TypeVar("_T")

class Loop(LoopCore, asyncio.AbstractEventLoop):
    """An asyncio event loop whose hot paths run in C on libev."""
    def __init__(self) -> None: ...
    # The rest of asyncio's loop API. fastloop follows asyncio's signatures
    # on each Python version, so it takes typeshed's declarations of them
    # (the runtime class likewise takes several of asyncio's methods as they
    # are). Being assigned, not declared abstract, they make Loop concrete.
    add_signal_handler = asyncio.AbstractEventLoop.add_signal_handler
    call_exception_handler = asyncio.AbstractEventLoop.call_exception_handler
    close = asyncio.AbstractEventLoop.close
    connect_accepted_socket = asyncio.AbstractEventLoop.connect_accepted_socket
    connect_read_pipe = asyncio.AbstractEventLoop.connect_read_pipe
    connect_write_pipe = asyncio.AbstractEventLoop.connect_write_pipe
    create_connection = asyncio.AbstractEventLoop.create_connection
    create_datagram_endpoint = asyncio.AbstractEventLoop.create_datagram_endpoint
    create_server = asyncio.AbstractEventLoop.create_server
    create_unix_connection = asyncio.AbstractEventLoop.create_unix_connection
    create_unix_server = asyncio.AbstractEventLoop.create_unix_server
    default_exception_handler = asyncio.AbstractEventLoop.default_exception_handler
    get_exception_handler = asyncio.AbstractEventLoop.get_exception_handler
    get_task_factory = asyncio.AbstractEventLoop.get_task_factory
    getaddrinfo = asyncio.AbstractEventLoop.getaddrinfo
    getnameinfo = asyncio.AbstractEventLoop.getnameinfo
    remove_signal_handler = asyncio.AbstractEventLoop.remove_signal_handler
    run_forever = asyncio.AbstractEventLoop.run_forever
    run_in_executor = asyncio.AbstractEventLoop.run_in_executor
    run_until_complete = asyncio.AbstractEventLoop.run_until_complete
    sendfile = asyncio.AbstractEventLoop.sendfile
    set_debug = asyncio.AbstractEventLoop.set_debug
    set_default_executor = asyncio.AbstractEventLoop.set_default_executor
    set_exception_handler = asyncio.AbstractEventLoop.set_exception_handler
    set_task_factory = asyncio.AbstractEventLoop.set_task_factory
    shutdown_asyncgens = asyncio.AbstractEventLoop.shutdown_asyncgens
    shutdown_default_executor = asyncio.AbstractEventLoop.shutdown_default_executor
    sock_connect = asyncio.AbstractEventLoop.sock_connect
    sock_sendfile = asyncio.AbstractEventLoop.sock_sendfile
    start_tls = asyncio.AbstractEventLoop.start_tls
    subprocess_exec = asyncio.AbstractEventLoop.subprocess_exec
    subprocess_shell = asyncio.AbstractEventLoop.subprocess_shell

def new_event_loop() -> Loop:
    """Return a new fastloop event loop."""

def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine on a new fastloop loop, as asyncio.run() does."""

if sys.version_info >= (3, 12):
    def eager_task_factory(
        loop: asyncio.AbstractEventLoop | None,
        coro: Coroutine[Any, Any, _T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> Task[_T]:
        """Like asyncio.eager_task_factory, with fastloop's Task."""

# The policy API follows asyncio's: deprecated on 3.12 (install) and 3.14
# (EventLoopPolicy), gone on 3.16.
if sys.version_info < (3, 16):
    from asyncio.unix_events import _UnixDefaultEventLoopPolicy

    if sys.version_info >= (3, 14):
        @deprecated("deprecated with asyncio's policies, removed in 3.16; use fastloop.run(main()) or loop_factory=fastloop.new_event_loop")
        class EventLoopPolicy(_UnixDefaultEventLoopPolicy):
            """A policy whose new_event_loop() returns a fastloop.Loop."""
    else:
        class EventLoopPolicy(_UnixDefaultEventLoopPolicy):
            """A policy whose new_event_loop() returns a fastloop.Loop."""

    if sys.version_info >= (3, 12):
        @deprecated("use fastloop.run(main()) or asyncio.run(main(), loop_factory=fastloop.new_event_loop)")
        def install() -> None:
            """Make fastloop the default loop through the event loop policy."""
    else:
        def install() -> None:
            """Make fastloop the default loop through the event loop policy."""
