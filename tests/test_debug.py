"""Debug mode: flags, slow-callback warnings, debug-only argument checks."""
import asyncio
import logging
import re
import sys
import threading
import time

import pytest

from fl_support import describe, run_py


def test_get_set_debug(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_repr_shows_debug(loop):
    loop.set_debug(True)
    assert "debug=True" in repr(loop)


@pytest.mark.parametrize("how,expected", [
    ("plain", "False"),
    ("env", "True"),
    ("devmode", "True"),
])
def test_debug_from_environment(impl, how, expected):
    env = {"PYTHONASYNCIODEBUG": "1"} if how == "env" else None
    pyargs = ("-X", "dev") if how == "devmode" else ()
    proc = run_py("""
        import warnings
        warnings.simplefilter("ignore")
        loop = new_loop()
        print(loop.get_debug())
        loop.close()
    """, impl, env=env, pyargs=pyargs)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == expected


def test_slow_callback_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.03)

    loop.call_soon(slow)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(loop.stop)
        loop.run_forever()
    msgs = [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert len(msgs) == 1, msgs
    assert re.fullmatch(r"Executing <Handle .*slow\(\) .*> took \d+\.\d{3} "
                        r"seconds", msgs[0]), msgs[0]


def test_slow_task_step_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def slow_coro():
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(slow_coro())
    msgs = [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert any(re.fullmatch(r"Executing <Task .*slow_coro.*> took \d+\.\d{3} "
                            r"seconds", m, re.S) for m in msgs), msgs


def test_no_slow_warning_without_debug(loop, caplog):
    loop.slow_callback_duration = 0.001
    loop.call_soon(time.sleep, 0.01)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert not [r for r in caplog.records if "Executing" in r.getMessage()]


def test_slow_callback_duration_attribute(loop):
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.5
    assert loop.slow_callback_duration == 0.5


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_call_from_other_thread_raises(loop, method):
    loop.set_debug(True)
    errors = []

    def target():
        try:
            if method == "call_soon":
                h = loop.call_soon(print)
            elif method == "call_later":
                h = loop.call_later(10, print)
            else:
                h = loop.call_at(loop.time() + 10, print)
            h.cancel()
            errors.append(None)
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=target).start())
    loop.run_forever()
    assert errors == ["Non-thread-safe operation invoked on an event loop "
                      "other than the current one"]


def test_debug_call_from_other_thread_when_not_running_is_allowed(loop):
    # The thread check only applies while the loop runs (asyncio's
    # _check_thread returns early when _thread_id is None).
    loop.set_debug(True)
    errors = []

    def target():
        try:
            loop.call_soon(print).cancel()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert errors == []


def test_debug_call_soon_threadsafe_from_other_thread_ok(loop):
    loop.set_debug(True)
    calls = []

    def target():
        loop.call_soon_threadsafe(calls.append, "ok")
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=target).start())
    loop.run_forever()
    assert calls == ["ok"]


async def _coro_func():
    pass


def _bad_callbacks():
    return [
        ("coroutine", "coroutines cannot be used with {m}()"),
        ("coroutine function", "coroutines cannot be used with {m}()"),
        ("int", "a callable object was expected by {m}(), got 1"),
    ]


def _make_bad(kind):
    if kind == "coroutine":
        return _coro_func()
    if kind == "coroutine function":
        return _coro_func
    return 1


# call_later delegates to call_at, so asyncio names call_at in its message.
_METHOD_NAME = {"call_soon": "call_soon", "call_later": "call_at",
                "call_at": "call_at",
                "call_soon_threadsafe": "call_soon_threadsafe"}


@pytest.mark.parametrize("kind,template", _bad_callbacks())
@pytest.mark.parametrize("method", sorted(_METHOD_NAME))
def test_debug_rejects_bad_callbacks(loop, method, kind, template):
    loop.set_debug(True)
    bad = _make_bad(kind)
    args = {"call_soon": (bad,), "call_soon_threadsafe": (bad,),
            "call_later": (1, bad), "call_at": (1, bad)}[method]
    try:
        with pytest.raises(TypeError) as info:
            getattr(loop, method)(*args)
        assert str(info.value) == template.format(m=_METHOD_NAME[method])
    finally:
        if kind == "coroutine":
            bad.close()


@pytest.mark.parametrize("kind,template", _bad_callbacks())
def test_debug_run_in_executor_rejects_bad_callbacks(loop, kind, template):
    loop.set_debug(True)
    bad = _make_bad(kind)
    try:
        with pytest.raises(TypeError) as info:
            loop.run_in_executor(None, bad)
        assert str(info.value) == template.format(m="run_in_executor")
    finally:
        if kind == "coroutine":
            bad.close()


def test_call_soon_coroutine_function_without_debug(loop):
    # asyncio checks for coroutines only in debug mode (see base_events
    # call_soon: `if self._debug: self._check_callback(...)`).  Without it the
    # coroutine function is called as a plain callback, which creates a
    # coroutine that is never awaited.  A loop may instead reject it up front
    # with the debug-mode TypeError; it must not crash either way.
    import warnings
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            loop.call_soon(_coro_func)
        except TypeError as exc:
            assert str(exc) == "coroutines cannot be used with call_soon()"
            return
        loop.call_soon(loop.stop)
        loop.run_forever()
        import gc
        gc.collect()
    assert errors == []


def test_debug_origin_tracking(loop):
    depths = []

    async def main():
        depths.append(sys.get_coroutine_origin_tracking_depth())

    before = sys.get_coroutine_origin_tracking_depth()
    loop.set_debug(True)
    loop.run_until_complete(main())
    from asyncio import constants
    assert depths[0] == constants.DEBUG_STACK_DEPTH
    assert sys.get_coroutine_origin_tracking_depth() == before


def test_debug_handle_source_traceback(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    assert re.search(r" created at .+test_debug\.py:\d+>$", repr(h)), repr(h)
    h.cancel()


def test_debug_exception_log_has_handle_traceback(loop, caplog):
    loop.set_debug(True)

    def bad():
        raise ValueError("x")

    loop.call_soon(bad)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(loop.stop)
        loop.run_forever()
    msgs = [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert len(msgs) == 1
    assert "\nsource_traceback: Object created at (most recent call last):\n" \
        in msgs[0], msgs[0]
    assert "test_debug.py" in msgs[0]
