"""Exception handler API and errors raised by callbacks."""
import asyncio
import logging

import pytest

from fl_support import PY312


def _run_soon(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def _asyncio_errors(caplog):
    return [r for r in caplog.records
            if r.name == "asyncio" and r.levelno >= logging.ERROR]


def test_get_set_exception_handler(loop):
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("bad", [1, "handler", object()])
def test_set_exception_handler_non_callable(loop, bad):
    with pytest.raises(TypeError, match=r"^A callable object or None is "
                                        r"expected, got "):
        loop.set_exception_handler(bad)
    assert loop.get_exception_handler() is None


def test_exception_in_callback_logged_and_loop_continues(loop, caplog):
    calls = []

    def bad():
        raise ZeroDivisionError("in callback")

    h = loop.call_soon(bad)
    loop.call_soon(calls.append, "after")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _run_soon(loop)
    assert calls == ["after"]
    recs = _asyncio_errors(caplog)
    assert len(recs) == 1
    msg = recs[0].getMessage()
    assert msg.startswith("Exception in callback ")
    assert "bad()" in msg
    assert "\nhandle: <Handle " in msg
    assert recs[0].exc_info[0] is ZeroDivisionError
    h.cancel()


def test_exception_in_timer_callback(loop, caplog):
    def bad():
        raise ValueError("timer")

    loop.call_later(0.001, bad)
    loop.call_later(0.01, loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_forever()
    recs = _asyncio_errors(caplog)
    assert len(recs) == 1
    assert recs[0].getMessage().startswith("Exception in callback ")
    assert "\nhandle: <TimerHandle when=" in recs[0].getMessage()


def test_custom_handler_receives_context(loop):
    contexts = []

    def handler(lp, ctx):
        contexts.append((lp, ctx))

    def bad():
        raise KeyError("k")

    loop.set_exception_handler(handler)
    h = loop.call_soon(bad)
    _run_soon(loop)
    assert len(contexts) == 1
    lp, ctx = contexts[0]
    assert lp is loop
    assert set(ctx) >= {"message", "exception", "handle"}
    # asyncio: "Exception in callback <callback source>", i.e. the handle's
    # repr without "<Handle " and ">"
    assert ctx["message"] == ("Exception in callback "
                              + repr(h)[len("<Handle "):-1])
    assert isinstance(ctx["exception"], KeyError)
    assert ctx["handle"] is h


def test_exception_in_custom_handler_is_logged(loop, caplog):
    calls = []

    def handler(lp, ctx):
        raise RuntimeError("handler broke")

    def bad():
        raise ValueError("x")

    loop.set_exception_handler(handler)
    loop.call_soon(bad)
    loop.call_soon(calls.append, "still running")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _run_soon(loop)
    assert calls == ["still running"]
    recs = _asyncio_errors(caplog)
    assert len(recs) == 1
    msg = recs[0].getMessage()
    assert msg.startswith("Unhandled error in exception handler\ncontext: {")
    assert recs[0].exc_info[0] is RuntimeError


def test_default_exception_handler_format(loop, caplog):
    exc = ValueError("boom")
    try:
        raise exc
    except ValueError:
        pass
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "Something happened",
                                        "exception": exc,
                                        "zeta": [1, 2], "alpha": "a"})
    recs = _asyncio_errors(caplog)
    assert len(recs) == 1
    assert recs[0].getMessage() == ("Something happened\n"
                                    "alpha: 'a'\n"
                                    "zeta: [1, 2]")
    assert recs[0].exc_info[1] is exc


def test_default_exception_handler_without_message(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"foo": 1})
    recs = _asyncio_errors(caplog)
    assert recs[0].getMessage() == "Unhandled exception in event loop\nfoo: 1"
    assert not recs[0].exc_info


def test_call_exception_handler_default(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "hello"})
    assert [r.getMessage() for r in _asyncio_errors(caplog)] == ["hello"]


def test_call_exception_handler_custom(loop):
    got = []
    loop.set_exception_handler(lambda lp, ctx: got.append((lp, ctx)))
    ctx = {"message": "custom"}
    loop.call_exception_handler(ctx)
    assert got == [(loop, ctx)]


def test_call_exception_handler_subclass_default_broken(loop, caplog):
    # A default handler that raises is reported, not propagated.
    def broken(context):
        raise RuntimeError("broken default")

    try:
        loop.default_exception_handler = broken
    except AttributeError:
        pytest.skip("instance attributes not settable")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "x"})
    msgs = [r.getMessage() for r in _asyncio_errors(caplog)]
    assert msgs == ["Exception in default exception handler"]


@pytest.mark.skipif(not PY312, reason="3.12+ runs the handler in the "
                                      "handle's context")
def test_custom_handler_runs_in_handle_context(loop):
    import contextvars
    var = contextvars.ContextVar("hv", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "handle-ctx")
    seen = []
    loop.set_exception_handler(lambda lp, c: seen.append(var.get()))

    def bad():
        raise ValueError

    loop.call_soon(bad, context=ctx)
    _run_soon(loop)
    assert seen == ["handle-ctx"]


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exception_in_callback_propagates(loop, exc_type):
    calls = []

    def bad():
        raise exc_type("out")

    loop.call_soon(bad)
    loop.call_soon(calls.append, "next")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert asyncio._get_running_loop() is None
    # the loop is usable afterwards and the remaining callback still runs
    _run_soon(loop)
    assert calls == ["next"]


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exception_in_callback_run_until_complete(loop, exc_type):
    def bad():
        raise exc_type()

    fut = loop.create_future()
    loop.call_soon(bad)
    with pytest.raises(exc_type):
        loop.run_until_complete(fut)
    assert not fut.done()
    loop.call_soon(fut.set_result, 1)
    assert loop.run_until_complete(fut) == 1


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exception_in_timer_propagates(loop, exc_type):
    def bad():
        raise exc_type()

    loop.call_later(0.001, bad)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()


def test_base_exception_in_custom_handler_propagates(loop):
    def handler(lp, ctx):
        raise SystemExit("from handler")

    def bad():
        raise ValueError

    loop.set_exception_handler(handler)
    loop.call_soon(bad)
    with pytest.raises(SystemExit):
        loop.run_forever()


def test_exception_in_reader_callback(loop, caplog):
    import socket
    a, b = socket.socketpair()
    try:
        def bad():
            a.recv(10)
            loop.remove_reader(a)
            raise OSError("reader")

        loop.add_reader(a, bad)
        b.send(b"x")
        loop.call_later(0.05, loop.stop)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.run_forever()
        recs = _asyncio_errors(caplog)
        assert len(recs) == 1
        assert recs[0].getMessage().startswith("Exception in callback ")
    finally:
        a.close()
        b.close()


def test_task_exception_never_retrieved(loop, caplog):
    import gc

    async def fail():
        raise ValueError("lost")

    async def main():
        t = loop.create_task(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del t

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_until_complete(main())
        gc.collect()
    msgs = [r.getMessage() for r in _asyncio_errors(caplog)]
    assert any(m.startswith("Task exception was never retrieved") for m in msgs), msgs


def test_future_exception_never_retrieved(loop, caplog):
    import gc
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        fut = loop.create_future()
        fut.set_exception(ValueError("lost"))
        del fut
        gc.collect()
    msgs = [r.getMessage() for r in _asyncio_errors(caplog)]
    assert len(msgs) == 1
    assert msgs[0].startswith("Future exception was never retrieved")


def test_base_exception_from_coroutine_not_logged(loop, caplog):
    # run_until_complete consumes the exception of the task it created for a
    # coroutine that raised a BaseException: no "never retrieved" log later.
    import gc

    async def main():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(main())
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
