"""fork(): the child can drop the inherited loop and run a new one.

Each test runs a script in a fresh interpreter that forks; the child never
returns into the script's normal flow (os._exit), and the parent checks the
child's exit status.
"""
import textwrap

from fl_support import describe, run_py

FORK_HELPERS = """
import os, time
def wait_child(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "timeout"
"""


def _check(impl, code):
    proc = run_py(FORK_HELPERS + textwrap.dedent(code), impl, timeout=30)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout.split("\n")


def test_child_closes_inherited_loop_and_runs_new_one(impl):
    out = _check(impl, """
        loop = new_loop()
        loop.run_until_complete(asyncio.sleep(0.01))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop.close()
                child = new_loop()
                async def main():
                    await asyncio.sleep(0.01)
                    fut = child.run_in_executor(None, lambda: 40)
                    return await fut + 2
                code = 0 if child.run_until_complete(main()) == 42 else 3
                child.close()
            except BaseException:
                import traceback; traceback.print_exc()
                code = 2
            finally:
                os._exit(code)
        print("child", wait_child(pid))
        print(loop.run_until_complete(asyncio.sleep(0.01, "parent ok")))
        loop.close()
    """)
    assert out[:2] == ["child 0", "parent ok"]


def test_child_does_not_disturb_parent_watchers(impl):
    out = _check(impl, """
        import socket
        loop = new_loop()
        a, b = socket.socketpair()
        got = []
        loop.add_reader(a, lambda: (got.append(a.recv(10)), loop.stop()))
        loop.call_later(30, print)    # a pending timer is inherited as well
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop.close()    # must not remove the parent's registrations
                child = new_loop()
                child.run_until_complete(asyncio.sleep(0.01))
                child.close()
                code = 0
            finally:
                os._exit(code)
        print("child", wait_child(pid))
        b.send(b"after fork")
        loop.call_later(5, loop.stop)
        loop.run_forever()
        print(got)
        loop.close()
    """)
    assert out[:2] == ["child 0", "[b'after fork']"]


def test_child_threadsafe_wakeup_works(impl):
    out = _check(impl, """
        import threading
        loop = new_loop()
        loop.run_until_complete(asyncio.sleep(0))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop.close()
                child = new_loop()
                threading.Timer(0.05, child.call_soon_threadsafe,
                                (child.stop,)).start()
                t0 = time.monotonic()
                child.run_forever()
                code = 0 if time.monotonic() - t0 < 2 else 4
                child.close()
            finally:
                os._exit(code)
        print("child", wait_child(pid))
        loop.close()
    """)
    assert out[0] == "child 0"


def test_child_signal_handler_works(impl):
    out = _check(impl, """
        import signal
        loop = new_loop()
        loop.add_signal_handler(signal.SIGUSR1, print)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop.close()
                child = new_loop()
                got = []
                child.add_signal_handler(signal.SIGUSR1,
                                         lambda: (got.append(1), child.stop()))
                child.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
                child.call_later(5, child.stop)
                child.run_forever()
                child.close()
                code = 0 if got == [1] else 5
            finally:
                os._exit(code)
        print("child", wait_child(pid))
        loop.close()
    """)
    assert out[0] == "child 0"


def test_run_entry_point_in_child(impl):
    out = _check(impl, """
        loop = new_loop()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop.close()
                async def main():
                    await asyncio.sleep(0.01)
                    return 7
                if sys.version_info >= (3, 12):
                    r = asyncio.run(main(), loop_factory=loop_factory())
                else:
                    l2 = new_loop()
                    r = l2.run_until_complete(main())
                    l2.close()
                code = 0 if r == 7 else 6
            finally:
                os._exit(code)
        print("child", wait_child(pid))
        loop.close()
    """)
    assert out[0] == "child 0"
