"""Fixtures: every behaviour test runs on asyncio's own loop and on fastloop.

``loop`` is parametrized over the two implementations, so a behaviour
difference shows as one failing test id (``[fastloop]``) next to a passing
one (``[asyncio]``).  fastloop is imported lazily, inside the fixture, so the
asyncio half runs even when the extension is not built.
"""
import asyncio
import faulthandler
import signal
import socket
import sys

import pytest

from fl_support import IMPLS


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "leak: repeated-workload memory checks (fast, but "
        "deselect with -m 'not leak' when profiling)")


def _factory(impl):
    if impl == "asyncio":
        return asyncio.new_event_loop
    import fastloop  # lazy: the asyncio half must run without the extension
    return fastloop.new_event_loop


@pytest.fixture(params=IMPLS)
def impl(request):
    """Name of the implementation under test: 'asyncio' or 'fastloop'."""
    return request.param


@pytest.fixture
def loop_factory(impl):
    """A zero-argument callable returning a new loop of the implementation."""
    return _factory(impl)


@pytest.fixture
def pair():
    """A connected, non-blocking socket pair, closed afterwards."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def loop(loop_factory):
    lp = loop_factory()
    try:
        yield lp
    finally:
        try:
            if lp.is_running():
                lp.stop()
            if not lp.is_closed():
                lp.close()
        finally:
            asyncio.set_event_loop(None)


class WatchdogTimeout(SystemExit):
    """Raised by the per-test watchdog.

    A SystemExit subclass so that a hung loop is interrupted even inside a
    callback (asyncio re-raises SystemExit from callbacks) and pytest reports
    it as a failure of that test only.
    """


TEST_TIMEOUT = 30


@pytest.fixture(autouse=True)
def _watchdog():
    """Fail a test that hangs instead of hanging the session.

    SIGALRM interrupts a loop that checks signals; faulthandler is the last
    resort for a loop that blocks in C without ever checking them.
    """
    def on_alarm(signum, frame):
        raise WatchdogTimeout(f"test took more than {TEST_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    faulthandler.dump_traceback_later(TEST_TIMEOUT + 30, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- Task/Future classes of the implementation under test ----

def _classes(impl):
    if impl == "asyncio":
        return asyncio.Future, asyncio.Task
    import fastloop
    return fastloop.Future, fastloop.Task


@pytest.fixture
def future_cls(impl):
    """asyncio.Future, or fastloop.Future: the Future the loop creates."""
    return _classes(impl)[0]


@pytest.fixture
def task_cls(impl):
    """asyncio.Task, or fastloop.Task: the Task the loop creates."""
    return _classes(impl)[1]


@pytest.fixture
def errors(loop):
    """Contexts passed to the loop's exception handler during the test."""
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    return seen
