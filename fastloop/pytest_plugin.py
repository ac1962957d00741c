"""A pytest plugin that runs a project's async tests on fastloop.

    pytest -p fastloop.pytest_plugin    # works from any checkout or install
    pytest --fastloop                   # with fastloop installed (pytest11 entry point)

Installing fastloop changes nothing by itself: the entry point registers
only `flag_plugin`, which adds the --fastloop option and turns this module
on when the option is given.

Each tool is reached through the way it offers to choose a loop:

- pytest-asyncio 1.4+: its `pytest_asyncio_loop_factories` hook returns
  fastloop's factory (one factory, so test ids stay as they are); before
  1.4: fastloop's event loop policy for the whole session.
- anyio's pytest plugin: an "asyncio" backend gets
  `loop_factory=fastloop.new_event_loop` in its options.
- unittest.IsolatedAsyncioTestCase: its `loop_factory` class attribute on
  3.13+; before 3.13, which has no such attribute, fastloop's event loop
  policy while each such test runs.

A test that chooses its loop itself keeps its choice: a project's own
`pytest_asyncio_loop_factories` hook that returns factories, an anyio
backend whose options name a `loop_factory` or `use_uvloop`, a test case
class with its own `loop_factory`.
"""
import asyncio
import contextlib
import sys
import unittest

import pytest

from . import _policy, new_event_loop
from ._loop import Loop
from ._version import __version__

_UNITTEST_HAS_LOOP_FACTORY = sys.version_info >= (3, 13)
_FACTORY_HOOK = "pytest_asyncio_loop_factories"
_UNDO = pytest.StashKey()      # config.stash: an ExitStack undoing our changes
_HOW = pytest.StashKey()       # config.stash: the report header's lines


# --- what the entry point registers ---

class _FlagPlugin:
    """Adds --fastloop; registers this module as a plugin when it is given."""

    def pytest_addoption(self, parser):
        parser.getgroup("fastloop").addoption(
            "--fastloop", action="store_true", default=False,
            help="run async tests (pytest-asyncio, anyio's asyncio backend, "
                 "IsolatedAsyncioTestCase) on fastloop's event loop")

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config):
        this = sys.modules[__name__]
        if (config.getoption("fastloop")
                and not config.pluginmanager.is_registered(this)):
            # A plugin registered now still gets pytest_configure (a
            # historic hook), and collection has not started.
            config.pluginmanager.register(this, "fastloop.pytest_plugin")


flag_plugin = _FlagPlugin()


# --- the plugin itself: module-level hooks ---

def pytest_configure(config):
    undo = contextlib.ExitStack()
    how = []
    plugins = config.pluginmanager
    # pytest-asyncio 1.4+ declares the hook; our own implementation of it
    # makes a hook caller appear either way, so ask for the declaration.
    factory_hook = getattr(plugins.hook, _FACTORY_HOOK, None)
    if factory_hook is not None and factory_hook.has_spec():
        how.append("pytest-asyncio through its loop factory hook")
    elif _has_pytest_asyncio(plugins):
        if not hasattr(asyncio, "set_event_loop_policy"):
            raise pytest.UsageError(
                "fastloop.pytest_plugin: this pytest-asyncio has no "
                "pytest_asyncio_loop_factories hook (1.4+) and this Python no "
                "event loop policies; upgrade pytest-asyncio")
        undo.enter_context(_policy.policy_installed())
        how.append("pytest-asyncio through the event loop policy "
                   "(no loop factory hook before pytest-asyncio 1.4)")
    if plugins.has_plugin("anyio"):
        how.append("anyio's asyncio backend through its loop_factory option")
    if _UNITTEST_HAS_LOOP_FACTORY:
        undo.enter_context(_class_attribute(unittest.IsolatedAsyncioTestCase,
                                            "loop_factory", Loop))
        how.append("IsolatedAsyncioTestCase through its loop_factory")
    else:
        how.append("IsolatedAsyncioTestCase through the event loop policy")
    config.stash[_UNDO] = undo
    config.stash[_HOW] = how


def pytest_unconfigure(config):
    undo = config.stash.get(_UNDO, None)
    if undo is not None:
        undo.close()


def pytest_report_header(config):
    return [f"fastloop {__version__}: " + "; ".join(config.stash.get(_HOW, []))]


@pytest.hookimpl(optionalhook=True, trylast=True)
def pytest_asyncio_loop_factories(config, item):
    # firstresult, and this implementation is asked last: a project's own
    # hook that returns factories wins.
    return {"fastloop": new_event_loop}


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    value = yield
    if fixturedef.argname != "anyio_backend":
        return value
    chosen = _anyio_backend_on_fastloop(value)
    if chosen is not value:
        # What the test and anyio's own hooks read is the cached value.
        fixturedef.cached_result = (chosen, *fixturedef.cached_result[1:])
    return chosen


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # Before 3.13, IsolatedAsyncioTestCase makes its asyncio.Runner (and so
    # its loop) inside the call phase, through the policy.
    if _UNITTEST_HAS_LOOP_FACTORY or not _is_isolated_async_case(item):
        return (yield)
    with _policy.policy_installed():
        return (yield)


# --- helpers ---

def _has_pytest_asyncio(plugins):
    return any(getattr(p, "__name__", None) == "pytest_asyncio.plugin"
               for p in plugins.get_plugins())


def _anyio_backend_on_fastloop(backend):
    """anyio_backend's value ("asyncio" or ("asyncio", options)) with
    fastloop's factory in the options, unless they choose a loop already;
    any other backend as it is."""
    if backend == "asyncio":
        return ("asyncio", {"loop_factory": new_event_loop})
    if (isinstance(backend, tuple) and len(backend) == 2
            and backend[0] == "asyncio" and isinstance(backend[1], dict)):
        options = backend[1]
        if options.get("loop_factory") is None and not options.get("use_uvloop"):
            return ("asyncio", {**options, "loop_factory": new_event_loop})
    return backend


def _is_isolated_async_case(item):
    cls = getattr(item, "cls", None)
    return isinstance(cls, type) and issubclass(cls, unittest.IsolatedAsyncioTestCase)


@contextlib.contextmanager
def _class_attribute(cls, name, value):
    """Set cls.name for the block; put back what the class itself had."""
    had = name in vars(cls)
    previous = vars(cls).get(name)
    setattr(cls, name, value)
    try:
        yield
    finally:
        if had:
            setattr(cls, name, previous)
        else:
            delattr(cls, name)
