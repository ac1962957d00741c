"""Finalizers report through the loop's exception handler exactly as
CPython's Task and Future do; debug mode records _source_traceback."""
import asyncio
import gc

import pytest


def _collect():
    gc.collect()


def _exc_never_retrieved(errors):
    return [c for c in errors if c["message"].endswith("exception was never retrieved")]


def _destroyed_pending(errors):
    return [c for c in errors if c["message"] == "Task was destroyed but it is pending!"]


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_future_exception_never_retrieved(loop, errors, future_cls, debug):
    loop.set_debug(debug)
    fut = loop.create_future()
    exc = ValueError("lost")
    fut.set_exception(exc)
    fid = id(fut)
    del fut
    _collect()
    ctxs = _exc_never_retrieved(errors)
    assert len(ctxs) == 1, errors
    ctx = ctxs[0]
    assert ctx["message"] == "Future exception was never retrieved"
    assert ctx["exception"] is exc
    assert id(ctx["future"]) == fid and type(ctx["future"]) is future_cls
    expected = {"message", "exception", "future"}
    if debug:
        expected.add("source_traceback")
        names = [fr.name for fr in ctx["source_traceback"]]
        assert "test_future_exception_never_retrieved" in names
    assert set(ctx) == expected


def test_subclass_name_in_message(loop, errors, future_cls):
    class MyFuture(future_cls):
        pass

    fut = MyFuture(loop=loop)
    fut.set_exception(KeyError)
    del fut
    _collect()
    ctxs = _exc_never_retrieved(errors)
    assert [c["message"] for c in ctxs] == ["MyFuture exception was never retrieved"]


@pytest.mark.parametrize("consume", ["exception", "result", "await", "log_traceback"])
def test_retrieved_exception_not_logged(loop, errors, consume):
    fut = loop.create_future()
    fut.set_exception(ValueError())
    if consume == "exception":
        fut.exception()
    elif consume == "result":
        with pytest.raises(ValueError):
            fut.result()
    elif consume == "await":
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    else:
        fut._log_traceback = False
    del fut
    _collect()
    assert errors == []


def test_result_and_cancel_not_logged(loop, errors):
    f1 = loop.create_future()
    f1.set_result(1)
    f2 = loop.create_future()
    f2.cancel()
    f3 = loop.create_future()
    del f1, f2, f3
    _collect()
    assert errors == []


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_task_exception_never_retrieved(loop, errors, task_cls, debug):
    loop.set_debug(debug)

    async def fail():
        raise ZeroDivisionError("zd")

    task = loop.create_task(fail())
    loop.run_until_complete(asyncio.sleep(0))
    assert task.done()
    tid = id(task)
    del task
    _collect()
    ctxs = _exc_never_retrieved(errors)
    assert len(ctxs) == 1, errors
    ctx = ctxs[0]
    assert ctx["message"] == "Task exception was never retrieved"
    assert type(ctx["exception"]) is ZeroDivisionError
    assert id(ctx["future"]) == tid and type(ctx["future"]) is task_cls
    expected = {"message", "exception", "future"}
    if debug:
        expected.add("source_traceback")
    assert set(ctx) == expected


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_task_destroyed_pending(loop, errors, task_cls, debug):
    loop.set_debug(debug)

    async def stuck():
        await loop.create_future()

    task = loop.create_task(stuck())
    loop.run_until_complete(asyncio.sleep(0))
    assert not task.done()
    tid = id(task)
    if debug:
        tb = task._source_traceback
        assert isinstance(tb, list)
        assert "test_task_destroyed_pending" in [fr.name for fr in tb]
    else:
        assert task._source_traceback is None
    del task
    _collect()
    ctxs = _destroyed_pending(errors)
    assert len(ctxs) == 1, errors
    ctx = ctxs[0]
    assert id(ctx["task"]) == tid and type(ctx["task"]) is task_cls
    expected = {"message", "task"}
    if debug:
        expected.add("source_traceback")
    assert set(ctx) == expected
    assert _exc_never_retrieved(errors) == []


def test_task_destroyed_pending_not_logged_when_disabled(loop, errors):
    async def stuck():
        await loop.create_future()

    task = loop.create_task(stuck())
    loop.run_until_complete(asyncio.sleep(0))
    task._log_destroy_pending = False
    del task
    _collect()
    assert errors == []


def test_task_destroyed_never_started(loop_factory):
    """A task scheduled but never run, dropped with its loop's ready queue."""
    async def body():
        pass

    lp2 = loop_factory()
    seen = []
    lp2.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    t = lp2.create_task(body())
    coro = t.get_coro()
    del t
    lp2.close()
    _collect()
    coro.close()
    msgs = [c["message"] for c in seen]
    assert msgs == ["Task was destroyed but it is pending!"]


def test_source_traceback_future_debug(loop, future_cls):
    loop.set_debug(True)
    fut = future_cls(loop=loop)
    assert fut._source_traceback[-1].name == "test_source_traceback_future_debug"
    loop.set_debug(False)
    assert future_cls(loop=loop)._source_traceback is None


def test_finalizer_on_cross_loop(errors, loop, impl):
    """The other implementation's Future on this loop reports through it."""
    import fastloop
    F = fastloop.Future if impl == "asyncio" else asyncio.Future
    fut = F(loop=loop)
    fut.set_exception(OSError())
    del fut
    _collect()
    assert [c["message"] for c in errors] == [
        "Future exception was never retrieved"]


def test_finalizer_handler_error_does_not_crash(loop):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(bad_handler)
    fut = loop.create_future()
    fut.set_exception(ValueError())
    del fut
    _collect()      # the error is reported as unraisable, not raised here
