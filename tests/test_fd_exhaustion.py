"""Running out of file descriptors (RLIMIT_NOFILE) at loop creation, at the
first run, and in a forked child (issue #10: C7 and class 5).

A loop that cannot get its kernel objects must fail with OSError(EMFILE),
never spin (fastloop used to loop forever inside libev with the GIL held),
and everything must work again once descriptors are free. Each test runs in
a subprocess with a low descriptor limit.
"""
import subprocess
import textwrap

import pytest

from fl_support import describe, run_py

FD_HELPERS = """
import errno, os, resource, time
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
def fill():
    '''Use up every free descriptor; returns them.'''
    held = []
    while True:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
            return held
def outcome(fn):
    try:
        r = fn()
    except OSError as exc:
        return ("OSError", errno.errorcode.get(exc.errno, exc.errno)), None
    return ("ok",), r
async def work():
    await asyncio.sleep(0.001)
    return 42
"""


def _run(code, impl, timeout=20):
    try:
        proc = run_py(FD_HELPERS + textwrap.dedent(code), impl,
                      timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung (spinning with no free descriptor?)")
    assert proc.returncode == 0, describe(proc)
    return proc.stdout


@pytest.mark.parametrize("free", [0, 1, 2, 3])
def test_new_event_loop_with_few_free_fds(impl, free):
    # With too few descriptors, new_event_loop() raises OSError(EMFILE)
    # (fastloop needs 2: epoll and its wakeup eventfd; asyncio 3: epoll and
    # a socketpair); with enough, the loop works. Either way, once
    # descriptors are free again, new loops work and a loop made before is
    # untouched.
    out = _run(f"""
        before = new_loop()
        held = fill()
        for fd in held[:{free}]:
            os.close(fd)
        del held[:{free}]
        res, lp = outcome(new_loop)
        print(*res)
        for fd in held:
            os.close(fd)
        if lp is not None:
            print("made", lp.run_until_complete(work()))
            lp.close()
        print("before", before.run_until_complete(work()))
        before.close()
        after = new_loop()
        print("after", after.run_until_complete(work()))
        after.close()
    """, impl)
    lines = out.split("\n")
    assert lines[0] in ("OSError EMFILE", "ok"), out
    if free == 0:
        assert lines[0] == "OSError EMFILE", out
    assert lines[-3:] == ["before 42", "after 42", ""], out


@pytest.mark.parametrize("free", [0, 1, 2, 3])
def test_first_run_with_few_free_fds(impl, free):
    # A loop made with descriptors to spare, first run when none are left
    # (fastloop makes its signal wakeup socketpair at the first run in the
    # main thread): it runs, or run_until_complete raises OSError(EMFILE)
    # and leaves the loop closable and runnable later.
    out = _run(f"""
        loop = new_loop()
        held = fill()
        for fd in held[:{free}]:
            os.close(fd)
        del held[:{free}]
        res, r = outcome(lambda: loop.run_until_complete(work()))
        print(*res, r)
        print("running", loop.is_running())
        for fd in held:
            os.close(fd)
        print("again", loop.run_until_complete(work()))
        loop.close()
        print("closed")
    """, impl)
    lines = out.split("\n")
    assert lines[0] in ("OSError EMFILE None", "ok 42"), out
    assert lines[1:] == ["running False", "again 42", "closed", ""], out


def test_forked_child_without_free_fds(impl):
    # The parent has no descriptor to spare when it forks. In the child the
    # inherited loop runs (or fails with OSError), new_event_loop() fails
    # with OSError(EMFILE) and works once descriptors are freed; the parent
    # keeps its loop.
    out = _run("""
        import sys
        loop = new_loop()
        print("parent", loop.run_until_complete(work()), flush=True)
        held = fill()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                res, r = outcome(lambda: loop.run_until_complete(work()))
                print("child inherited", *res, r, flush=True)
                res, lp = outcome(new_loop)
                print("child new", *res, flush=True)
                for fd in held:
                    os.close(fd)
                lp = lp or new_loop()
                print("child freed", lp.run_until_complete(work()), flush=True)
                lp.close()
                loop.close()
                code = 0
            except BaseException:
                import traceback; traceback.print_exc()
            finally:
                sys.stdout.flush()
                os._exit(code)
        for fd in held:
            os.close(fd)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                status = "hung"
                break
            time.sleep(0.01)
        print("child status", status if status == "hung" else os.waitstatus_to_exitcode(status))
        print("parent again", loop.run_until_complete(work()))
        loop.close()
    """, impl)
    lines = [ln for ln in out.split("\n") if ln]
    assert lines[0] == "parent 42", out
    assert "child status 0" in lines, out
    assert lines[-1] == "parent again 42", out
    inherited = [ln for ln in lines if ln.startswith("child inherited")]
    assert inherited and inherited[0] in ("child inherited ok 42",
                                          "child inherited OSError EMFILE None"), out
    assert "child new OSError EMFILE" in lines, out
    assert "child freed 42" in lines, out


def test_loop_keeps_working_through_exhaustion(impl):
    # A running loop's callbacks, timers and cross-thread wakeups need no
    # new descriptor: they keep working while none is free.
    out = _run("""
        import threading
        loop = new_loop()
        async def main():
            held = fill()
            try:
                await asyncio.sleep(0.01)
                fut = loop.create_future()
                threading.Timer(0.01, loop.call_soon_threadsafe,
                                args=(fut.set_result, "woken")).start()
                return await asyncio.wait_for(fut, 5)
            finally:
                for fd in held:
                    os.close(fd)
        print(loop.run_until_complete(main()))
        loop.close()
    """, impl)
    assert out.split("\n")[0] == "woken", out
