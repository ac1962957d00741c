"""fastloop.EventLoopPolicy, for code that still goes through policies."""
import asyncio
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


def set_policy():
    """Install EventLoopPolicy without the policy system's own deprecation
    warnings (3.14 deprecates set_event_loop_policy itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(EventLoopPolicy())
