"""add_reader / add_writer / remove_* on fds and socket objects."""
import os
import socket

import pytest

from fl_support import describe, run_py, run_until


def test_add_reader_fd(loop, pair):
    a, b = pair
    got = []

    def on_read(tag):
        got.append((tag, a.recv(100)))

    assert loop.add_reader(a.fileno(), on_read, "tag") is None
    b.send(b"hello")
    run_until(loop, lambda: got)
    assert got == [("tag", b"hello")]
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False


def test_add_reader_socket_object(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda: got.append(a.recv(100)))
    b.send(b"x")
    run_until(loop, lambda: got)
    assert got == [b"x"]
    # registered with the object, removed by the number (and vice versa)
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a) is False


def test_add_reader_fd_remove_with_object(loop, pair):
    a, b = pair
    loop.add_reader(a.fileno(), print)
    assert loop.remove_reader(a) is True


def test_reader_fires_repeatedly_until_removed(loop, pair):
    a, b = pair
    count = []

    def on_read():
        count.append(1)
        if len(count) == 3:
            loop.remove_reader(a)   # data is never consumed: level-triggered

    loop.add_reader(a, on_read)
    b.send(b"x")
    run_until(loop, lambda: len(count) >= 3)
    run_until(loop, lambda: False, timeout=0.05)
    assert len(count) == 3


def test_add_writer(loop, pair):
    a, b = pair
    got = []

    def on_write(x):
        got.append(x)
        loop.remove_writer(a)

    assert loop.add_writer(a.fileno(), on_write, 7) is None
    run_until(loop, lambda: got)
    assert got == [7]
    assert loop.remove_writer(a.fileno()) is False


def test_add_writer_socket_object(loop, pair):
    a, b = pair
    got = []
    loop.add_writer(a, lambda: got.append(1))
    run_until(loop, lambda: got)
    assert got
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False


def test_replace_reader(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda: got.append("old"))
    loop.add_reader(a, lambda: (got.append("new"), a.recv(10)))
    b.send(b"x")
    run_until(loop, lambda: got)
    run_until(loop, lambda: False, timeout=0.03)
    assert set(got) == {"new"}
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_replace_writer(loop, pair):
    a, b = pair
    got = []
    loop.add_writer(a, lambda: got.append("old"))
    loop.add_writer(a, lambda: got.append("new"))
    run_until(loop, lambda: got)
    assert set(got) == {"new"}
    assert loop.remove_writer(a) is True


def test_reader_and_writer_same_fd(loop, pair):
    a, b = pair
    got = {"r": 0, "w": 0}

    def on_read():
        got["r"] += 1
        a.recv(10)

    def on_write():
        got["w"] += 1

    loop.add_reader(a, on_read)
    loop.add_writer(a, on_write)
    b.send(b"x")
    run_until(loop, lambda: got["r"] and got["w"])
    assert got["r"] >= 1 and got["w"] >= 1
    # removing the writer keeps the reader
    assert loop.remove_writer(a) is True
    got["r"] = 0
    b.send(b"y")
    run_until(loop, lambda: got["r"])
    assert got["r"] == 1
    assert loop.remove_reader(a) is True
    assert loop.remove_writer(a) is False


def test_remove_writer_when_only_reader(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda: got.append(a.recv(10)))
    assert loop.remove_writer(a) is False
    b.send(b"still")
    run_until(loop, lambda: got)
    assert got == [b"still"]
    assert loop.remove_reader(a) is True


def test_remove_unregistered(loop, pair):
    a, b = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a.fileno()) is False


def test_remove_reader_inside_callback(loop, pair):
    a, b = pair
    got = []

    def on_read():
        got.append(a.recv(10))
        assert loop.remove_reader(a) is True

    loop.add_reader(a, on_read)
    b.send(b"1")
    run_until(loop, lambda: got)
    b.send(b"2")
    run_until(loop, lambda: False, timeout=0.03)
    assert got == [b"1"]


def test_reader_on_pipe_eof(loop):
    r, w = os.pipe()
    got = []
    try:
        def on_read():
            got.append(os.read(r, 10))
            loop.remove_reader(r)

        loop.add_reader(r, on_read)
        os.close(w)
        w = None
        run_until(loop, lambda: got)
        assert got == [b""]
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_reader_with_file_object(loop):
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf, os.fdopen(w, "wb") as wf:
        got = []
        loop.add_reader(rf, lambda: got.append(rf.read(10)))
        wf.write(b"abc")
        wf.flush()
        run_until(loop, lambda: got)
        assert got == [b"abc"]
        assert loop.remove_reader(rf) is True


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_invalid_fd(loop, method):
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        getattr(loop, method)(-1, print)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_invalid_fd(loop, method):
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        getattr(loop, method)(-1)


@pytest.mark.parametrize("bad", [object(), "3", 1.5, None, b"x"])
@pytest.mark.parametrize("method", ["add_reader", "add_writer",
                                    "remove_reader", "remove_writer"])
def test_object_without_fileno(loop, method, bad):
    args = (bad, print) if method.startswith("add") else (bad,)
    with pytest.raises(ValueError, match="^Invalid file object: "):
        getattr(loop, method)(*args)


def test_fileno_raising(loop):
    class Bad:
        def fileno(self):
            raise ValueError("no fileno")

    with pytest.raises(ValueError, match="^Invalid file object: "):
        loop.add_reader(Bad(), print)


def test_closed_loop(loop, pair):
    a, b = pair
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.add_reader(a, print)
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.add_writer(a, print)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_close_loop_with_registered_fds(loop, pair):
    a, b = pair
    loop.add_reader(a, print)
    loop.add_writer(b, print)
    loop.close()       # must not touch or close the user's fds
    a.send(b"ok")
    assert b.recv(10) == b"ok"


# ---------------------------------------------------- dangerous: subprocess

def _check(impl, code):
    proc = run_py(code, impl, timeout=20)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout


def test_add_reader_closed_fd_raises_oserror(impl):
    out = _check(impl, """
        import socket
        loop = new_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        a.close()
        for m in ("add_reader", "add_writer"):
            try:
                getattr(loop, m)(fd, print)
            except OSError as exc:
                print(m, "OSError", exc.errno)
            else:
                print(m, "accepted")
        # the loop still works
        print(loop.run_until_complete(asyncio.sleep(0.01, "alive")))
        loop.close()
    """)
    import errno
    assert out.split("\n")[:3] == [f"add_reader OSError {errno.EBADF}",
                                   f"add_writer OSError {errno.EBADF}",
                                   "alive"]


def test_add_reader_huge_fd_raises_oserror(impl):
    out = _check(impl, """
        loop = new_loop()
        try:
            loop.add_reader(10**6, print)
        except OSError as exc:
            print("OSError")
        except (ValueError, OverflowError) as exc:
            print("other", type(exc).__name__)
        print(loop.run_until_complete(asyncio.sleep(0.01, "alive")))
        loop.close()
    """)
    assert out.split() == ["OSError", "alive"]


def test_add_reader_regular_file(impl):
    # epoll refuses regular files (EPERM), so asyncio raises PermissionError.
    out = _check(impl, """
        import tempfile
        loop = new_loop()
        with tempfile.TemporaryFile() as f:
            try:
                loop.add_reader(f.fileno(), print)
            except OSError as exc:
                print(type(exc).__name__)
            else:
                print("accepted")
                loop.remove_reader(f.fileno())
        print(loop.run_until_complete(asyncio.sleep(0.01, "alive")))
        loop.close()
    """)
    assert out.split() == ["PermissionError", "alive"]


def test_close_fd_with_registered_reader_then_run(impl):
    out = _check(impl, """
        import socket
        loop = new_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        loop.add_reader(fd, print, "never")
        loop.add_writer(fd, lambda: None)
        a.close()
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        print("ran")
        try:
            print("remove_reader", loop.remove_reader(fd))
            print("remove_writer", loop.remove_writer(fd))
        except OSError as exc:
            print("remove raised", type(exc).__name__)
        print(loop.run_until_complete(asyncio.sleep(0.01, "alive")))
        loop.close()
        b.close()
        print("closed")
    """)
    assert "ran" in out and "alive" in out and "closed" in out


def test_reader_closes_its_own_fd(impl):
    out = _check(impl, """
        import socket
        loop = new_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        def on_read():
            a.close()          # without remove_reader first
            print("closed-in-callback", flush=True)
        loop.add_reader(fd, on_read)
        b.send(b"x")
        loop.call_later(0.1, loop.stop)
        loop.run_forever()
        print("survived")
        # a new socket probably reuses the fd number: it must work normally
        c, d = socket.socketpair()
        got = []
        loop.remove_reader(fd)
        loop.add_reader(c.fileno(), lambda: (got.append(c.recv(10)), loop.stop()))
        d.send(b"new")
        loop.call_later(2, loop.stop)
        loop.run_forever()
        print("reuse", got)
        loop.close()
    """)
    assert "closed-in-callback" in out and "survived" in out
    assert "reuse [b'new']" in out


def test_close_fd_and_reuse_number_without_remove(impl):
    # The fd is closed while registered and its number is reused at once by a
    # new socket.  asyncio keeps the stale registration (a plain add_reader
    # on the reused number is then silently never watched: the kernel dropped
    # the closed fd from epoll), so the contract is: remove_reader() of the
    # stale number, then add_reader() of the new socket works.
    out = _check(impl, """
        import socket
        loop = new_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        loop.add_reader(fd, print, "stale")
        a.close()
        c, d = socket.socketpair()
        print("same number", c.fileno() == fd)
        got = []
        loop.remove_reader(fd)
        loop.add_reader(c.fileno(), lambda: (got.append(c.recv(10)), loop.stop()))
        d.send(b"new")
        loop.call_later(2, loop.stop)
        loop.run_forever()
        print("got", got)
        loop.close()
    """)
    assert "got [b'new']" in out
