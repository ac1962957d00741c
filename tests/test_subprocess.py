"""Subprocesses: subprocess_exec/shell and asyncio.create_subprocess_* on
both loops, including faults, leaks and a loop in another thread."""
import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

from fl_support import run, run_py

PIPE = asyncio.subprocess.PIPE
PY = sys.executable


def open_fds():
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def zombie_children():
    """Our children in state Z."""
    me = os.getpid()
    zombies = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            zombies.append(int(name))
    return zombies


class SubRecorder(asyncio.SubprocessProtocol):
    def __init__(self, loop):
        self.events = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.exited = loop.create_future()
        self.all_lost = loop.create_future()
        self.lost = 0

    def connection_made(self, tr):
        self.events.append("made")

    def pipe_data_received(self, fd, data):
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd))

    def process_exited(self):
        self.events.append("exited")
        self.exited.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.all_lost.set_result(exc)


def test_subprocess_exec_protocol(loop):
    async def main():
        tr, pr = await loop.subprocess_exec(
            lambda: SubRecorder(loop), PY, "-c",
            "import sys; d = sys.stdin.buffer.read(); "
            "sys.stdout.buffer.write(d.upper()); sys.stderr.write('err')",
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        assert tr.get_pid() > 0
        assert tr.get_returncode() is None
        stdin = tr.get_pipe_transport(0)
        stdin.write(b"hello")
        stdin.close()
        await pr.all_lost
        assert tr.get_returncode() == 0
        assert pr.data[1] == b"HELLO" and pr.data[2] == b"err"
        # asyncio's order: pipes lost and the exit, then connection_lost.
        assert pr.events[0] == "made" and pr.events[-1] == "lost"
        assert set(pr.events[1:-1]) == {("pipe_lost", 0), ("pipe_lost", 1),
                                        ("pipe_lost", 2), "exited"}
        tr.close()
    run(loop, main())


def test_subprocess_shell_and_returncode(loop):
    async def main():
        tr, pr = await loop.subprocess_shell(lambda: SubRecorder(loop),
                                             "echo hi; exit 7")
        await pr.all_lost
        assert tr.get_returncode() == 7
        assert pr.data[1] == b"hi\n"
        tr.close()
    run(loop, main())


@pytest.mark.parametrize("kwargs,message", [
    ({"universal_newlines": True}, "universal_newlines must be False"),
    ({"bufsize": 1}, "bufsize must be 0"),
    ({"shell": True}, "shell must be False"),
])
def test_subprocess_exec_bad_args(loop, kwargs, message):
    async def main():
        with pytest.raises(ValueError, match=message):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true",
                                       **kwargs)
    run(loop, main())


def test_subprocess_shell_bad_args(loop):
    async def main():
        with pytest.raises(ValueError, match="shell must be True"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, "true",
                                        shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"])
    run(loop, main())


def test_missing_executable(loop):
    async def main():
        fds = open_fds()
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/no/such/program-fl")
        assert open_fds() == fds
    run(loop, main())


def test_communicate_and_wait(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await p.communicate(b"data")
        assert (out, err, p.returncode) == (b"data", b"", 0)
        assert await p.wait() == 0
    run(loop, main())


def test_stdio_options(loop, tmp_path):
    async def main():
        path = tmp_path / "out"
        with open(path, "wb") as f:
            p = await asyncio.create_subprocess_exec(
                PY, "-c", "import sys; print('o'); print('e', file=sys.stderr)",
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
            assert await p.wait() == 0
        assert sorted(path.read_bytes().split()) == [b"e", b"o"]
        r, w = os.pipe()
        p = await asyncio.create_subprocess_exec(
            PY, "-c", f"import os; os.write({w}, b'fd')", pass_fds=(w,),
            cwd=str(tmp_path), env={"FL": "1"}, start_new_session=True)
        assert await p.wait() == 0
        os.close(w)
        assert os.read(r, 10) == b"fd"
        os.close(r)
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import os; print(os.getcwd(), os.environ.get('FL'))",
            stdout=PIPE, cwd=str(tmp_path), env={"FL": "x"})
        out, _ = await p.communicate()
        assert out.split() == [str(tmp_path).encode(), b"x"]
    run(loop, main())


def test_child_dies_at_once(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import os; os._exit(3)", stdin=PIPE, stdout=PIPE,
            stderr=PIPE)
        out, err = await p.communicate(b"x" * 1000000)
        assert p.returncode == 3 and out == b""
    run(loop, main())


def test_closes_stdout_early(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import os, time; os.close(1); time.sleep(0.2); "
            "os._exit(0)", stdout=PIPE)
        assert await p.stdout.read() == b""
        assert await p.wait() == 0
    run(loop, main())


def test_ignores_sigterm_then_kill(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import signal, sys, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)", stdout=PIPE)
        assert await p.stdout.readline() == b"ready\n"
        p.terminate()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(p.wait()), 0.3)
        p.kill()
        assert await p.wait() == -signal.SIGKILL
    run(loop, main(), timeout=20)


def test_floods_stderr(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; sys.stderr.buffer.write(b'e' * 5000000)",
            stdout=PIPE, stderr=PIPE)
        out, err = await p.communicate()
        assert len(err) == 5000000 and p.returncode == 0
    run(loop, main(), timeout=30)


def test_write_to_closed_stdin(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import os; os.close(0); import time; time.sleep(0.1)",
            stdin=PIPE)
        await asyncio.sleep(0.05)
        # communicate() swallows BrokenPipeError as asyncio does.
        await p.communicate(b"x" * 1000000)
        assert p.returncode == 0
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import os; os.close(0)", stdin=PIPE)
        await p.wait()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                p.stdin.write(b"x" * 100000)
                await p.stdin.drain()
    run(loop, main(), timeout=20)


def test_large_output_through_cat(loop):
    async def main():
        data = os.urandom(1 << 20) * 24
        p = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE)
        out, _ = await p.communicate(data)
        assert out == data and p.returncode == 0
    run(loop, main(), timeout=60)


def test_transport_signals(loop):
    async def main():
        tr, pr = await loop.subprocess_exec(
            lambda: SubRecorder(loop), PY, "-c", "import time; time.sleep(60)")
        tr.send_signal(signal.SIGUSR1)
        await pr.exited
        assert tr.get_returncode() == -signal.SIGUSR1
        tr.close()
        tr, pr = await loop.subprocess_exec(
            lambda: SubRecorder(loop), PY, "-c", "import time; time.sleep(60)")
        tr.terminate()
        await pr.exited
        assert tr.get_returncode() == -signal.SIGTERM
        tr.close()
        await pr.all_lost
        with pytest.raises(ProcessLookupError):
            tr.kill()
    run(loop, main())


def test_close_kills_running_child(loop):
    async def main():
        tr, pr = await loop.subprocess_exec(
            lambda: SubRecorder(loop), PY, "-c", "import time; time.sleep(60)")
        tr.close()
        await pr.exited
        assert tr.get_returncode() == -signal.SIGKILL
    run(loop, main())


def test_cancel_leaves_no_zombie(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(60)", stdout=PIPE)
        task = asyncio.ensure_future(p.communicate())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        p.kill()
        await p.wait()
        # A create_subprocess_exec cancelled at once.
        task = asyncio.ensure_future(asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(60)"))
        await asyncio.sleep(0)
        task.cancel()
        try:
            p2 = await task
        except asyncio.CancelledError:
            pass
        else:
            p2.kill()
            await p2.wait()
        for _ in range(100):
            if not zombie_children():
                break
            await asyncio.sleep(0.02)
        assert zombie_children() == []
    run(loop, main())


def test_many_children_no_leaks(loop):
    async def main():
        for _ in range(200):
            p = await asyncio.create_subprocess_exec(
                "true", stdin=PIPE, stdout=PIPE, stderr=PIPE)
            await p.communicate()
            assert p.returncode == 0

    run(loop, main(), timeout=60)
    before = open_fds()
    run(loop, main(), timeout=60)
    assert open_fds() <= before
    assert zombie_children() == []


def test_concurrent_children(loop):
    async def one(i):
        p = await asyncio.create_subprocess_shell(f"echo {i}", stdout=PIPE)
        out, _ = await p.communicate()
        return int(out)

    async def main():
        return await asyncio.gather(*(one(i) for i in range(40)))
    assert run(loop, main(), timeout=60) == list(range(40))
    assert zombie_children() == []


def test_other_children_undisturbed(loop):
    async def main():
        outside = subprocess.Popen(["sleep", "0.3"])
        p = await asyncio.create_subprocess_exec("true")
        await p.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # threads
            pid = os.fork()
        if pid == 0:
            os._exit(5)
        p = await asyncio.create_subprocess_exec("true")
        await p.wait()
        await asyncio.sleep(0.1)
        # The loop reaped only its own child: ours are still ours to reap.
        assert os.waitpid(pid, 0) == (pid, 5 << 8)
        assert outside.wait() == 0
    run(loop, main())


def test_loop_in_other_thread(loop_factory):
    result = []

    def target():
        lp = loop_factory()
        try:
            async def main():
                p = await asyncio.create_subprocess_exec(
                    "cat", stdin=PIPE, stdout=PIPE)
                out, _ = await p.communicate(b"thread")
                return out, p.returncode
            result.append(lp.run_until_complete(
                asyncio.wait_for(main(), 20)))
        finally:
            lp.close()

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert result == [(b"thread", 0)]


def test_no_sigchld_handler(impl):
    """fastloop installs no SIGCHLD handler and reaps only its own pids."""
    if impl != "fastloop":
        pytest.skip("asyncio's child watcher is its own business")
    r = run_py("""
        import signal, subprocess
        loop = new_loop()
        async def main():
            p = await asyncio.create_subprocess_exec("true")
            await p.wait()
            return p.returncode
        print(loop.run_until_complete(main()),
              signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL)
        loop.close()
    """, impl)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "True"]


def test_waiting_thread_fallback(impl):
    """Without os.pidfd_open, a thread waits for each child."""
    r = run_py("""
        del os.pidfd_open
        loop = new_loop()
        async def main():
            p = await asyncio.create_subprocess_exec(
                "cat", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE)
            out, _ = await p.communicate(b"ok")
            q = await asyncio.create_subprocess_shell("exit 4")
            return out, p.returncode, await q.wait()
        print(loop.run_until_complete(main()))
        loop.close()
    """, impl)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(b'ok', 0, 4)"


def test_child_watcher_bad_input(impl):
    """fastloop's C pidfd watcher: bad arguments raise, never crash."""
    if impl != "fastloop":
        pytest.skip("fastloop's own type")
    import fastloop
    from fastloop import _core
    lp = fastloop.new_event_loop()
    try:
        with pytest.raises(TypeError):
            _core.ChildWatcher(object(), 0, 1, print)
        with pytest.raises(ValueError):
            _core.ChildWatcher(lp, -1, 1, print)
        with pytest.raises(ValueError):
            _core.ChildWatcher(lp, 10**6, 1, print)
        with pytest.raises(ValueError):
            _core.ChildWatcher(lp, 0, 0, print)
        with pytest.raises(TypeError):
            _core.ChildWatcher(lp, 0, 1, None)
        p = subprocess.Popen(["sleep", "10"])
        fd = os.pidfd_open(p.pid)
        w = _core.ChildWatcher(lp, fd, p.pid, print)
        assert w.active and w.pid == p.pid
        w.cancel()
        w.cancel()
        assert not w.active
        with pytest.raises(OSError):
            os.fstat(fd)    # the watcher closed its pidfd
        p.kill()
        p.wait()
    finally:
        lp.close()
    with pytest.raises(RuntimeError):
        _core.ChildWatcher(lp, 0, 1, print)


def test_child_watcher_callback_error_reported(impl):
    if impl != "fastloop":
        pytest.skip("fastloop's own type")
    import fastloop
    from fastloop import _core
    lp = fastloop.new_event_loop()
    errors = []
    lp.set_exception_handler(lambda loop, ctx: errors.append(ctx))
    try:
        p = subprocess.Popen(["true"])
        done = lp.create_future()

        def callback(code):
            done.set_result(code)
            raise ZeroDivisionError

        w = _core.ChildWatcher(lp, os.pidfd_open(p.pid), p.pid, callback)
        assert lp.run_until_complete(asyncio.wait_for(done, 10)) == 0
        lp.run_until_complete(asyncio.sleep(0))
        assert not w.active
        assert isinstance(errors[0]["exception"], ZeroDivisionError)
        p.returncode = 0
    finally:
        lp.close()


def test_loop_closed_with_running_child_leaves_no_zombie(loop, impl):
    if impl == "asyncio" and sys.version_info >= (3, 12):
        pytest.skip("asyncio 3.12+ (child watcher, pidfd watcher) leaves "
                    "this child a zombie")

    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(0.3)")
        return p.pid

    pid = run(loop, main())
    fds = open_fds()
    loop.close()
    assert open_fds() <= fds        # the pidfd went with the loop
    for _ in range(200):
        if pid not in zombie_children() and not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")
