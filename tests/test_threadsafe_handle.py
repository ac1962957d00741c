"""call_soon_threadsafe()'s handle from 3.14 on (asyncio's _ThreadSafeHandle):
cancel() and cancelled() from another thread wait while the callback runs,
a callback may cancel its own handle, and the handle is an instance of
asyncio.events._ThreadSafeHandle. Before 3.14 asyncio has no such
guarantee, so these tests run on 3.14+ only, on both loops."""
import asyncio
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(sys.version_info < (3, 14),
                                reason="_ThreadSafeHandle is 3.14+")


def test_is_asyncio_threadsafe_handle(loop):
    h = loop.call_soon_threadsafe(print)
    assert isinstance(h, asyncio.events._ThreadSafeHandle)
    assert isinstance(loop.call_soon(print), asyncio.Handle)
    assert not isinstance(loop.call_soon(print), asyncio.events._ThreadSafeHandle)
    assert repr(h).startswith("<_ThreadSafeHandle print(")


@pytest.mark.parametrize("op", ["cancel", "cancelled"])
def test_other_thread_waits_for_running_callback(loop, op):
    started, finished = threading.Event(), threading.Event()
    seen = {}

    def callback():
        started.set()
        time.sleep(0.2)             # lets go of the GIL: the thread runs now
        finished.set()

    def other(handle):
        started.wait(5)
        seen["result"] = getattr(handle, op)()
        seen["finished_first"] = finished.is_set()
        loop.call_soon_threadsafe(loop.stop)

    h = loop.call_soon_threadsafe(callback)
    t = threading.Thread(target=other, args=(h,))
    t.start()
    loop.run_forever()
    t.join(5)
    assert seen["finished_first"] is True
    assert seen["result"] is (None if op == "cancel" else False)


def test_callback_cancels_its_own_handle(loop):
    box = {}

    def callback():
        box["h"].cancel()
        box["cancelled"] = box["h"].cancelled()
        loop.stop()

    box["h"] = loop.call_soon_threadsafe(callback)
    loop.run_forever()
    assert box["cancelled"] is True


def test_cancelled_from_thread_before_run_never_runs(loop):
    ran = []
    h = loop.call_soon_threadsafe(ran.append, 1)
    t = threading.Thread(target=h.cancel)
    t.start()
    t.join()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [] and h.cancelled()
