"""fastloop.EventLoopPolicy, for code that still goes through policies."""
import asyncio
import contextlib
import sys
import warnings

from ._loop import Loop

def _base_policy():
    # The platform's default policy (on Unix it also carries the child
    # watcher API of 3.10-3.13), reached without the module attribute that
    # newer Pythons deprecate.
    try:
        from asyncio.unix_events import _UnixDefaultEventLoopPolicy
        return _UnixDefaultEventLoopPolicy
    except ImportError:
        return (getattr(asyncio.events, "BaseDefaultEventLoopPolicy", None)
                or asyncio.events._BaseDefaultEventLoopPolicy)


_Base = _base_policy()


class EventLoopPolicy(_Base):
    """A policy whose new_event_loop() returns a fastloop.Loop."""

    _loop_factory = Loop

    def __repr__(self):
        return f"<{type(self).__name__}>"

    if hasattr(asyncio, "AbstractChildWatcher"):
        # Through 3.13, code (CPython's own tests among it) sets a child
        # watcher on the policy; fastloop's loops watch their children
        # themselves, so the watcher is only kept, as asyncio keeps it.
        _watcher = None

        def get_child_watcher(self):
            _deprecated("get_child_watcher")
            return self._watcher

        def set_child_watcher(self, watcher):
            if self._watcher is not None and self._watcher is not watcher:
                self._watcher.close()
            self._watcher = watcher
            _deprecated("set_child_watcher")


def _deprecated(name):
    """The warning asyncio's policy gives for its child watcher API."""
    if sys.version_info >= (3, 12):
        warnings._deprecated(name, "{name!r} is deprecated as of Python 3.12 "
                             "and will be removed in Python {remove}.",
                             remove=(3, 14))


def set_policy():
    """Install EventLoopPolicy without the policy system's own deprecation
    warnings (3.14 deprecates set_event_loop_policy itself)."""
    _swap_policy(EventLoopPolicy())


@contextlib.contextmanager
def policy_installed():
    """EventLoopPolicy for the duration of the block, then the policy that
    was there before (for the pytest plugin: unittest before 3.13 and
    pytest-asyncio before 1.4 reach the loop only through the policy)."""
    previous = _swap_policy(EventLoopPolicy())
    try:
        yield
    finally:
        _swap_policy(previous)


def _swap_policy(policy):
    """Set the policy, return the previous one; no deprecation warnings."""
    getter = getattr(asyncio.events, "_get_event_loop_policy", None)
    setter = getattr(asyncio.events, "_set_event_loop_policy", None)
    if getter is not None and setter is not None:   # 3.14+: the public API warns
        previous = getter()
        setter(policy)
        return previous
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        previous = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(policy)
    return previous
