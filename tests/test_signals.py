"""add_signal_handler / remove_signal_handler.

Deliveries run in a subprocess: a loop that failed to install a Python-level
handler would let SIGUSR1's default action kill the whole pytest session.
"""
import signal
import threading

import pytest

from fl_support import describe, run_py


def _check(impl, code, timeout=20):
    proc = run_py(code, impl, timeout=timeout)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout.split("\n")


def test_signal_handler_runs(impl):
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        def handler(*args):
            got.append(args)
            loop.stop()
        loop.add_signal_handler(signal.SIGUSR1, handler, 1, "two")
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)
        loop.run_forever()
        print(got)
        print(loop.remove_signal_handler(signal.SIGUSR1))
        print(loop.remove_signal_handler(signal.SIGUSR1))
        print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)
        loop.close()
    """)
    assert out[:4] == ["[(1, 'two')]", "True", "False", "True"]


def test_signal_wakes_idle_loop_promptly(impl):
    out = _check(impl, """
        import signal, os, threading, time
        loop = new_loop()
        loop.add_signal_handler(signal.SIGUSR1, loop.stop)
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        t0 = time.monotonic()
        loop.run_forever()     # nothing else scheduled: blocks in the poll
        print(round(time.monotonic() - t0, 3) < 2.0)
        loop.close()
    """)
    assert out[0] == "True"


def test_signal_handler_runs_in_loop_callback_context(impl):
    # The handler runs as a loop callback, not inside the C signal handler:
    # the running loop is set and it may use the loop freely.
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        def handler():
            got.append(asyncio.get_running_loop() is loop)
            loop.call_soon(loop.stop)
        loop.add_signal_handler(signal.SIGUSR2, handler)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
        loop.call_later(5, loop.stop)
        loop.run_forever()
        print(got)
        loop.close()
    """)
    assert out[0] == "[True]"


def test_signal_handler_replaced(impl):
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        loop.add_signal_handler(signal.SIGUSR1, got.append, "old")
        loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("new"), loop.stop()))
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)
        loop.run_forever()
        print(got)
        loop.close()
    """)
    assert out[0] == "['new']"


def test_sigint_handler_replaces_keyboard_interrupt(impl):
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        def on_int():
            got.append("handler")
            loop.stop()
        loop.add_signal_handler(signal.SIGINT, on_int)
        loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
        loop.call_later(5, loop.stop)
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            got.append("KeyboardInterrupt")
        print(got)
        print(loop.remove_signal_handler(signal.SIGINT))
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        loop.close()
    """)
    assert out[:3] == ["['handler']", "True", "True"]


def test_close_removes_signal_handlers(impl):
    out = _check(impl, """
        import signal
        loop = new_loop()
        loop.add_signal_handler(signal.SIGUSR1, print)
        loop.add_signal_handler(signal.SIGINT, print)
        loop.close()
        print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        print(signal.set_wakeup_fd(-1))
    """)
    assert out[:3] == ["True", "True", "-1"]


def test_signal_handler_exception_reported(impl):
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        loop.set_exception_handler(lambda lp, ctx: got.append(ctx["message"][:22]))
        def bad():
            raise ValueError("sig")
        loop.add_signal_handler(signal.SIGUSR1, bad)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(0.2, loop.stop)
        loop.run_forever()
        print(got)
        loop.close()
    """)
    assert out[0] == "['Exception in callback ']"


def test_signal_handler_non_callable(impl):
    # asyncio does not check callability in add_signal_handler (it wraps any
    # object in a Handle); the TypeError then surfaces when the signal is
    # delivered.  A loop may reject at once with TypeError.  Never a crash.
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        loop.set_exception_handler(lambda lp, ctx: got.append(type(ctx.get("exception")).__name__))
        try:
            loop.add_signal_handler(signal.SIGUSR1, 42)
        except TypeError:
            print("rejected")
        else:
            loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
            loop.call_later(0.2, loop.stop)
            loop.run_forever()
            print(got)
        loop.close()
    """)
    assert out[0] in ("rejected", "['TypeError']")


# ------------------------------------------------ errors (in-process safe)

@pytest.mark.parametrize("sig", [0, 1000, -1])
def test_add_invalid_signal(loop, sig):
    with pytest.raises(ValueError, match=f"^invalid signal number {sig}$"):
        loop.add_signal_handler(sig, print)
    with pytest.raises(ValueError, match=f"^invalid signal number {sig}$"):
        loop.remove_signal_handler(sig)


@pytest.mark.parametrize("sig", ["2", 2.0, None])
def test_signal_not_int(loop, sig):
    with pytest.raises(TypeError, match=r"^sig must be an int, not "):
        loop.add_signal_handler(sig, print)
    with pytest.raises(TypeError, match=r"^sig must be an int, not "):
        loop.remove_signal_handler(sig)


@pytest.mark.parametrize("signame", ["SIGKILL", "SIGSTOP"])
def test_uncatchable_signal(loop, signame):
    sig = getattr(signal, signame)
    with pytest.raises(RuntimeError, match=f"^sig {int(sig)} cannot be "
                                           f"caught$"):
        loop.add_signal_handler(sig, print)
    assert loop.remove_signal_handler(sig) is False


async def _coro_func():
    pass


def test_coroutine_handler_rejected(loop):
    with pytest.raises(TypeError, match="^coroutines cannot be used with "
                                        r"add_signal_handler\(\)$"):
        loop.add_signal_handler(signal.SIGUSR1, _coro_func)
    coro = _coro_func()
    try:
        with pytest.raises(TypeError, match="^coroutines cannot be used with "
                                            r"add_signal_handler\(\)$"):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_remove_not_registered(loop):
    assert loop.remove_signal_handler(signal.SIGUSR2) is False


def test_add_signal_handler_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.add_signal_handler(signal.SIGUSR1, print)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_signal_handler_from_other_thread(loop):
    # set_wakeup_fd only works in the main thread; asyncio turns its
    # ValueError into RuntimeError.
    errors = []

    def target():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert len(errors) == 1
    assert type(errors[0]) is RuntimeError
    assert "main thread" in str(errors[0])
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_loop_in_other_thread_add_signal_handler(loop_factory):
    errors = []

    def target():
        lp = loop_factory()
        try:
            lp.add_signal_handler(signal.SIGUSR1, print)
        except BaseException as exc:
            errors.append(exc)
        finally:
            lp.close()

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert [type(e) for e in errors] == [RuntimeError]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_received_before_run_is_handled(impl):
    out = _check(impl, """
        import signal, os
        loop = new_loop()
        got = []
        loop.add_signal_handler(signal.SIGUSR1, got.append, "sig")
        os.kill(os.getpid(), signal.SIGUSR1)      # loop not running yet
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        print(got)
        loop.close()
    """)
    assert out[0] == "['sig']"


def test_signal_handler_two_loops_last_wins(impl):
    # Signal handlers are process-wide; asyncio's second loop takes over the
    # wakeup fd.  Closing the first loop afterwards must not break the second.
    out = _check(impl, """
        import signal, os
        l1 = new_loop()
        l1.add_signal_handler(signal.SIGUSR2, print, "l1")
        l1.remove_signal_handler(signal.SIGUSR2)
        l2 = new_loop()
        got = []
        l2.add_signal_handler(signal.SIGUSR1, lambda: (got.append("l2"), l2.stop()))
        l1.close()
        l2.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        l2.call_later(5, l2.stop)
        l2.run_forever()
        print(got)
        l2.close()
    """)
    assert out[0] == "['l2']"
