"""fastloop.EventLoopPolicy, for code that still goes through policies."""
import asyncio
import warnings

from ._loop import Loop

# asyncio's Unix policy where it has one: on 3.10-3.13 it carries the child
# watcher API (get_child_watcher/set_child_watcher) that code and CPython's
# own tests still call.
_unix_events = getattr(asyncio, "unix_events", None)
_Base = getattr(_unix_events, "_UnixDefaultEventLoopPolicy", None) or \
    getattr(asyncio.events, "BaseDefaultEventLoopPolicy", None) or \
    getattr(asyncio.events, "_BaseDefaultEventLoopPolicy")


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
