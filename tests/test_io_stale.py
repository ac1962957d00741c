"""add_reader & co. when objects, fds and the loop change under them.

- a socket registered and then closed is still found by remove_reader(sock)
  (issue #10, B2), and its callback never fires for a socket that reuses the
  fd number;
- a transport that gave up its fd (``transport._pipe = None``) no longer
  owns it in the loop's fd -> transport map (C10);
- the I/O callback survives a finalizer that removes watchers (S1);
- Python code that runs inside add_reader/remove_reader (fileno()) may close
  the loop: the libev call after it must not run on a closed loop (S4).
"""
import asyncio
import contextvars
import gc
import os
import socket

import pytest

from fl_support import describe, run, run_py, run_until


def _socketpair_on(fd):
    """A socketpair whose first socket has the number fd (just freed)."""
    a, b = socket.socketpair()
    if a.fileno() != fd:
        os.dup2(a.fileno(), fd)
        a2 = socket.socket(fileno=fd)
        a.close()
        a = a2
    a.setblocking(False)
    b.setblocking(False)
    return a, b


# ---------------------------------------------------------------- B2

@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_remove_closed_socket_object(loop, kind):
    # anyio's asyncio backend closes a socket during a receive and then
    # calls remove_reader(sock): the registration must go (asyncio finds it
    # by identity once fileno() says -1).
    a, b = socket.socketpair()
    try:
        getattr(loop, "add_" + kind)(a, print)
        a.close()
        assert getattr(loop, "remove_" + kind)(a) is True
        # Gone: no longer found by identity, and -1 is no fd.
        with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
            getattr(loop, "remove_" + kind)(a)
    finally:
        a.close()
        b.close()


def test_remove_closed_socket_keeps_other_half(loop, impl):
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, print)
        loop.add_writer(a, print)
        a.close()
        if impl == "asyncio":
            # asyncio's selector re-arms the writer's events on the closed
            # fd with epoll_ctl and fails; fastloop just drops the reader.
            with pytest.raises(OSError):
                loop.remove_reader(a)
            return
        assert loop.remove_reader(a) is True
        assert loop.remove_writer(a) is True
        with pytest.raises(ValueError):
            loop.remove_writer(a)
    finally:
        b.close()


def test_remove_unregistered_closed_socket_raises(loop):
    # Not found by identity either: fileno()'s -1 is an invalid fd, as in
    # asyncio's selector.
    a, b = socket.socketpair()
    a.close()
    b.close()
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        loop.remove_reader(a)


def test_stale_reader_never_fires_for_reused_fd(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    stale = []
    loop.add_reader(a, stale.append, "stale")
    a.close()
    assert loop.remove_reader(a) is True
    b.close()
    c, d = _socketpair_on(fd)
    try:
        got = []
        loop.add_reader(c, lambda: got.append(c.recv(10)))
        d.send(b"new")
        run_until(loop, lambda: got)
        run_until(loop, lambda: False, timeout=0.03)
        assert got == [b"new"]
        assert stale == []
        assert loop.remove_reader(c) is True
    finally:
        c.close()
        d.close()


def test_stale_registration_dropped_when_number_reused(impl):
    # A socket closed without remove_*(); a new socket gets its number and
    # is registered. fastloop drops the dead socket's registration (its
    # fileno() is -1 now) so that its writer never fires for the new
    # socket. asyncio's selector instead finds the old key by number and
    # either refuses (the kernel forgot the closed fd: FileNotFoundError
    # from epoll_ctl) or keeps the old writer: both are accepted for it.
    proc = run_py("""
        import socket, os
        loop = new_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        stale = []
        loop.add_reader(a, stale.append, "r")
        loop.add_writer(a, stale.append, "w")
        a.close(); b.close()
        c, d = socket.socketpair()
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd); c.close(); c = socket.socket(fileno=fd)
        c.setblocking(False)
        got = []
        try:
            loop.add_reader(c, lambda: (got.append(c.recv(10)), loop.stop()))
        except OSError as exc:
            print("refused", type(exc).__name__)
        else:
            d.send(b"new")
            loop.call_later(1, loop.stop)
            loop.run_forever()
            loop.call_later(0.03, loop.stop)
            loop.run_forever()
            print("got", got, "stale", sorted(set(stale)))
        loop.close()
    """, impl)
    assert proc.returncode == 0, describe(proc)
    if impl == "fastloop":
        assert proc.stdout.split("\n")[0] == "got [b'new'] stale []", describe(proc)
    else:
        assert proc.stdout.startswith(("refused", "got")), describe(proc)


@pytest.mark.parametrize("user", ["sock_recv", "transport"])
def test_stale_registration_dropped_for_sock_ops_and_transports(impl, user):
    # The same, when the reused number is next watched by a sock_*()
    # operation or a transport (they have watchers of their own on the fd,
    # which make libev register the number with the kernel again). fastloop
    # only: asyncio's selector would keep the stale key and hand it the new
    # socket's events, or never register the new socket (a hang).
    if impl != "fastloop":
        pytest.skip("asyncio keeps stale selector keys (see above)")
    proc = run_py("""
        import socket, os, sys
        USER = sys.argv[1]
        loop = new_loop()
        a, b = socket.socketpair()
        fd = a.fileno()
        stale = []
        loop.add_reader(a, stale.append, "r")
        loop.add_writer(a, stale.append, "w")
        a.close(); b.close()
        c, d = socket.socketpair()
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd); c.close(); c = socket.socket(fileno=fd)
        c.setblocking(False)
        async def main():
            loop.call_later(0.02, d.send, b"new")
            if USER == "sock_recv":
                data = await loop.sock_recv(c, 10)
            else:
                got = loop.create_future()
                class P(asyncio.Protocol):
                    def data_received(self, data):
                        got.done() or got.set_result(data)
                tr, _ = await loop.connect_accepted_socket(P, c)
                data = await got
            await asyncio.sleep(0.03)
            return data
        print("got", loop.run_until_complete(main()), "stale", stale)
        loop.close()
    """, impl, args=(user,))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split("\n")[0] == "got b'new' stale []", describe(proc)


def test_add_reader_after_close_with_int_keeps_live_registration(loop, pair):
    # Registered by the object, then added by number: one registration, the
    # object's, which is alive (not stale): both callbacks stay.
    a, b = pair
    got = []
    loop.add_reader(a, lambda: got.append(("r", a.recv(10))))
    loop.add_writer(a.fileno(), lambda: got.append("w"))
    b.send(b"x")
    run_until(loop, lambda: ("r", b"x") in got and "w" in got)
    assert ("r", b"x") in got and "w" in got
    assert loop.remove_writer(a) is True
    assert loop.remove_reader(a.fileno()) is True


# ---------------------------------------------------------------- C10

def test_pipe_transport_forgotten_frees_its_fd(loop):
    # asyncio's own code sets transport._pipe = None; the fd number may then
    # be reused, and add_reader / sock_* on it must not be refused as "used
    # by transport".
    r, w = os.pipe()
    rf = os.fdopen(r, "rb", buffering=0)
    tr, _ = run(loop, loop.connect_read_pipe(asyncio.Protocol, rf))
    tr.pause_reading()
    tr._pipe = None
    rf.close()
    os.close(w)
    c, d = _socketpair_on(r)
    try:
        got = []
        loop.add_reader(c, lambda: got.append(c.recv(10)))
        d.send(b"hi")
        run_until(loop, lambda: got)
        assert got == [b"hi"]
        assert loop.remove_reader(c) is True

        async def recv():
            loop.call_later(0.01, d.send, b"there")
            return await loop.sock_recv(c, 10)

        assert run(loop, recv()) == b"there"
    finally:
        c.close()
        d.close()
        tr.close()
        run(loop, asyncio.sleep(0))


def test_forgotten_pipe_transport_in_map_is_dropped(impl):
    # fastloop only (asyncio does not enter pipe transports in _transports):
    # after `_pipe = None` without pause_reading(), the map forgets the fd.
    if impl != "fastloop":
        pytest.skip("asyncio keeps no pipe transport in loop._transports")
    import fastloop
    loop = fastloop.new_event_loop()
    r, w = os.pipe()
    try:
        rf = os.fdopen(r, "rb", buffering=0)
        tr, _ = run(loop, loop.connect_read_pipe(asyncio.Protocol, rf))
        assert loop._transports.get(r) is tr
        tr._pipe = None
        rf.close()
        os.close(w)
        c, d = _socketpair_on(r)
        try:
            loop.add_writer(c, print)      # refused before the fix
            assert loop.remove_writer(c) is True
            assert r not in loop._transports
        finally:
            c.close()
            d.close()
        tr.close()
        run(loop, asyncio.sleep(0))
    finally:
        loop.close()


# ---------------------------------------------------------------- S1

def test_io_callback_survives_finalizer_removing_writer(loop, pair):
    # The reader's handle is cancelled (not removed); at the next event the
    # loop drops it, and its context, the last reference to an object whose
    # __del__ removes the writer of the same fd, is freed right there.
    # fastloop's I/O callback then still held borrowed pointers to the
    # writer's handle and to the fd's watcher (issue #10, S1).
    a, b = pair
    loop.set_debug(True)
    loop.slow_callback_duration = 10
    events = []

    class Finalizer:
        def __del__(self):
            events.append("finalized")
            events.append(("removed", loop.remove_writer(a)))

    var = contextvars.ContextVar("v")

    def on_read():
        events.append("read")
        loop._current_handle.cancel()

    def setup():
        var.set(Finalizer())
        loop.add_reader(a, on_read)

    ctx = contextvars.Context()
    ctx.run(setup)
    del ctx
    gc.collect()
    loop.add_writer(a, events.append, "write")
    b.send(b"x")            # readable (never consumed) and writable
    run_until(loop, lambda: "finalized" in events)
    run_until(loop, lambda: False, timeout=0.05)
    assert "finalized" in events, events
    i = events.index("finalized")
    assert events[i + 1] == ("removed", True)
    assert "write" not in events[i:], events
    assert events[0] == "read"
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    assert run(loop, asyncio.sleep(0, "alive")) == "alive"


# ---------------------------------------------------------------- S4

@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_fileno_closing_the_loop_during_add(loop, pair, method):
    # fileno() is Python code run after add_reader checked that the loop is
    # open: the watcher must not be started on the closed loop.
    a, b = pair

    class Evil:
        def fileno(self):
            loop.close()
            return a.fileno()

    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        getattr(loop, method)(Evil(), print)
    assert loop.is_closed()


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_fileno_closing_the_loop_during_remove(loop, pair, method):
    a, b = pair
    getattr(loop, method.replace("remove", "add"))(a, print)

    class Evil:
        def fileno(self):
            loop.close()
            return a.fileno()

    assert getattr(loop, method)(Evil()) is False
    assert loop.is_closed()


def test_debug_add_reader_with_closing_finalizer(impl):
    # In debug mode add_reader captures a stack (Python code, allocation and
    # so possibly a GC pass) after its checks; a finalizer that closes the
    # loop there must not leave a watcher started on the closed loop.
    proc = run_py("""
        import gc, socket
        loop = new_loop()
        loop.set_debug(True)
        a, b = socket.socketpair()
        class Closer:
            def __del__(self):
                loop.close()
        class Evil:
            def fileno(self):
                # a cycle the collector frees during the next allocations
                c = Closer(); c.me = c; del c
                gc.set_threshold(1)
                return a.fileno()
        try:
            loop.add_reader(Evil(), print)
        except RuntimeError as exc:
            print("refused", exc)
        finally:
            gc.set_threshold(700, 10, 10)
        gc.collect()
        print("closed", loop.is_closed())
        if not loop.is_closed():
            print("removed", loop.remove_reader(a))
            loop.close()
        a.close(); b.close()
        print("ok")
    """, impl)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.rstrip().endswith("ok"), describe(proc)
