"""Pipe transports: connect_read_pipe / connect_write_pipe on both loops."""
import asyncio
import errno
import gc
import os
import pty
import socket
import tempfile

import pytest

from fl_support import run


def reading(tr):
    """tr.is_reading(), or None where asyncio's pipe lacks it (3.10)."""
    try:
        return tr.is_reading()
    except NotImplementedError:
        return None


def open_fds():
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class Recorder(asyncio.Protocol):
    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.lost = loop.create_future()
        self.got = asyncio.Event()

    def connection_made(self, tr):
        self.events.append("made")
        self.transport = tr

    def data_received(self, data):
        assert isinstance(data, bytes)
        if "data" not in self.events:
            self.events.append("data")
        self.data += data
        self.got.set()

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


class WriteRecorder(asyncio.Protocol):
    def __init__(self, loop):
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, tr):
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


def test_read_pipe_data_eof_lost(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(r, "rb", 0))
        assert tr.get_extra_info("pipe").fileno() == r
        assert reading(tr) in (True, None)
        os.write(w, b"hello")
        await pr.got.wait()
        os.write(w, b" world")
        os.close(w)
        assert await pr.lost is None
        assert bytes(pr.data) == b"hello world"
        assert pr.events == ["made", "data", "eof", ("lost", None)]
        assert tr.is_closing()
        with pytest.raises(OSError):
            os.fstat(r)     # the transport closed the pipe
    run(loop, main())


def test_read_pipe_pause_resume(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(r, "rb", 0))
        tr.pause_reading()
        assert reading(tr) in (False, None)
        os.write(w, b"x")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        tr.resume_reading()
        assert reading(tr) in (True, None)
        await pr.got.wait()
        assert pr.data == b"x"
        tr.close()
        tr.close()
        assert await pr.lost is None
        assert pr.events.count(("lost", None)) == 1
        os.close(w)
    run(loop, main())


def test_write_pipe_write_and_close(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(w, "wb", 0))
        assert tr.can_write_eof()
        tr.write(b"abc")
        tr.writelines([b"de", bytearray(b"f"), memoryview(b"g")])
        tr.close()
        assert await pr.lost is None
        assert os.read(r, 100) == b"abcdefg"
        assert os.read(r, 100) == b""
        os.close(r)
    run(loop, main())


def test_write_pipe_flow_control_and_drain(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(w, "wb", 0))
        tr.set_write_buffer_limits(high=1024)
        tr.write(b"x" * (1 << 20))
        assert tr.get_write_buffer_size() > 0
        assert pr.events == ["made", "pause"]
        total = 0
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(r, "rb", 0))
        while len(rp.data) < (1 << 20):
            rp.got.clear()
            await rp.got.wait()
        assert "resume" in pr.events
        assert tr.get_write_buffer_size() == 0
        tr.write_eof()          # a write pipe's EOF closes it
        assert tr.is_closing()
        assert await rp.lost is None
        assert await pr.lost is None
        del total
    run(loop, main())


def test_write_pipe_reader_closed(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(w, "wb", 0))
        os.close(r)
        # The loop notices the reader went away without any write.
        assert await asyncio.wait_for(pr.lost, 5) is None
    run(loop, main())


def test_write_pipe_reader_closed_with_buffer(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(w, "wb", 0))
        tr.write(b"x" * (1 << 20))
        assert tr.get_write_buffer_size() > 0
        os.close(r)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, BrokenPipeError)
        # Later writes are dropped quietly, as asyncio does.
        tr.write(b"more")
        tr.close()
    run(loop, main())


def test_write_after_close_dropped(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(w, "wb", 0))
        tr.close()
        tr.write(b"dropped")
        await pr.lost
        assert os.read(r, 10) == b""
        os.close(r)
    run(loop, main())


def test_abort_write_pipe(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(w, "wb", 0))
        tr.write(b"x" * (1 << 20))
        tr.abort()
        assert await pr.lost is None
        assert tr.get_write_buffer_size() == 0
        os.close(r)
    run(loop, main())


def test_regular_file_rejected(loop):
    async def main():
        with tempfile.TemporaryFile() as f:
            with pytest.raises(ValueError, match="Pipe transport is for pipes"):
                await loop.connect_read_pipe(asyncio.Protocol, f)
            with pytest.raises(ValueError, match="Pipe transport is only for"):
                await loop.connect_write_pipe(asyncio.Protocol, f)
    run(loop, main())


def test_fifo(loop, tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)

    async def main():
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(rfd, "rb", 0))
        wt, wp = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                               open(wfd, "wb", 0))
        wt.write(b"through the fifo")
        wt.close()
        assert await rp.lost is None
        assert rp.data == b"through the fifo"
        await wp.lost
    run(loop, main())


def test_pty(loop):
    async def main():
        master, slave = pty.openpty()
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(master, "rb", 0))
        os.write(slave, b"tty data\n")
        await rp.got.wait()
        assert b"tty data" in rp.data
        os.close(slave)
        # Linux reports EIO on the master: asyncio treats it as the end.
        exc = await asyncio.wait_for(rp.lost, 5)
        assert exc is None or (isinstance(exc, OSError)
                               and exc.errno == errno.EIO)
    run(loop, main())


def test_socket_as_pipe(loop):
    async def main():
        a, b = socket.socketpair()
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop), a)
        b.sendall(b"sock")
        b.close()
        assert await rp.lost is None
        assert rp.data == b"sock"
    run(loop, main())


def test_char_device_write(loop):
    async def main():
        f = open("/dev/null", "wb", 0)
        tr, pr = await loop.connect_write_pipe(lambda: WriteRecorder(loop), f)
        tr.write(b"x" * 100000)
        tr.close()
        assert await pr.lost is None
    run(loop, main())


def test_protocol_error_in_data_received_reported(loop):
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    class Bad(Recorder):
        def data_received(self, data):
            super().data_received(data)
            raise ZeroDivisionError

    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_read_pipe(lambda: Bad(loop),
                                              open(r, "rb", 0))
        os.write(w, b"a")
        await pr.got.wait()
        await asyncio.sleep(0.01)
        assert not tr.is_closing()   # a pipe reads on
        os.close(w)
        await pr.lost
    run(loop, main())
    assert any(isinstance(c.get("exception"), ZeroDivisionError) for c in errors)


def test_eof_received_runs_from_a_handle_after_queued_callbacks(loop):
    # asyncio's read pipe call_soon()s eof_received: callbacks already queued
    # run first, and an error in it is reported with the Handle.
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    order = []

    class Proto(Recorder):
        def eof_received(self):
            order.append("eof")
            raise ZeroDivisionError

    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_read_pipe(lambda: Proto(loop),
                                              open(r, "rb", 0))
        await asyncio.sleep(0)

        def close_writer_and_queue():
            os.close(w)                 # the EOF is there for the next poll
            loop.call_soon(order.append, "soon")
        loop.call_soon(close_writer_and_queue)
        await pr.lost
    run(loop, main())
    assert order.index("soon") < order.index("eof"), order
    (ctx,) = [c for c in errors if isinstance(c.get("exception"), ZeroDivisionError)]
    assert ctx["message"].startswith("Exception in callback ")
    assert "eof_received" in ctx["message"]
    assert "handle" in ctx


def test_streams_over_pipes(loop):
    async def main():
        r, w = os.pipe()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), open(r, "rb", 0))
        wtr, wpr = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, open(w, "wb", 0))
        writer = asyncio.StreamWriter(wtr, wpr, None, loop)
        for i in range(100):
            writer.write(b"line %d\n" % i)
        await writer.drain()
        writer.close()
        lines = [line async for line in reader]
        assert len(lines) == 100 and lines[-1] == b"line 99\n"
    run(loop, main())


def test_no_fd_leak(loop):
    async def main():
        for _ in range(50):
            r, w = os.pipe()
            rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                  open(r, "rb", 0))
            wt, wp = await loop.connect_write_pipe(
                lambda: WriteRecorder(loop), open(w, "wb", 0))
            wt.write(b"x")
            wt.close()
            await rp.lost
            await wp.lost
    run(loop, main())
    before = open_fds()
    run(loop, main())
    assert open_fds() <= before


# -- pipe capacity ------------------------------------------------------------
# fastloop differs here on purpose: a pipe that carries bulk data is grown to
# 1 MiB (F_SETPIPE_SZ), which saves a wakeup and two context switches per
# 64 KiB; asyncio leaves every pipe at the kernel's default. The data seen by
# either side is the same; only the capacity differs.

F_GETPIPE_SZ = 1032


def pipe_capacity(fd):
    import fcntl
    return fcntl.fcntl(fd, F_GETPIPE_SZ)


def test_bulk_write_grows_pipe_small_write_does_not(loop, impl):
    async def main():
        small_r, small_w = os.pipe()
        bulk_r, bulk_w = os.pipe()
        default = pipe_capacity(small_w)
        st, _ = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                              open(small_w, "wb", 0))
        bt, _ = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                              open(bulk_w, "wb", 0))
        st.write(b"x" * 1000)
        payload = bytes(range(256)) * 4096     # 1 MiB: more than a pipe holds
        bt.write(payload)
        assert bt.get_write_buffer_size() > 0
        small_capacity, bulk_capacity = pipe_capacity(small_r), pipe_capacity(bulk_r)
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(bulk_r, "rb", 0))
        while len(rp.data) < len(payload):
            rp.got.clear()
            await rp.got.wait()
        assert bytes(rp.data) == payload
        st.close()
        bt.close()
        rt.close()
        await rp.lost
        os.close(small_r)
        return default, small_capacity, bulk_capacity
    default, small_capacity, bulk_capacity = run(loop, main())
    assert small_capacity == default
    if impl == "fastloop":
        assert bulk_capacity == 1 << 20
    else:
        assert bulk_capacity == default


def test_bulk_read_grows_pipe(loop, impl):
    async def main():
        r, w = os.pipe()
        default = pipe_capacity(r)
        os.write(w, b"y" * default)            # a full default pipe
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(r, "rb", 0))
        while len(rp.data) < default:
            rp.got.clear()
            await rp.got.wait()
        grown = pipe_capacity(w)
        os.close(w)
        assert await rp.lost is None
        assert bytes(rp.data) == b"y" * default
        return default, grown
    default, grown = run(loop, main())
    assert grown == (1 << 20 if impl == "fastloop" else default)


def test_pipe_already_bigger_is_not_shrunk(loop):
    async def main():
        import fcntl
        r, w = os.pipe()
        fcntl.fcntl(w, F_GETPIPE_SZ - 1, 1 << 20)     # F_SETPIPE_SZ
        tr, _ = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                              open(w, "wb", 0))
        tr.write(b"z" * (3 << 20))
        capacity = pipe_capacity(r)
        tr.abort()
        await asyncio.sleep(0)
        os.close(r)
        return capacity
    assert run(loop, main()) == 1 << 20


def test_read_pipe_is_a_read_transport_only(loop):
    async def main():
        r, w = os.pipe()
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              open(r, "rb", 0))
        wt, _ = await loop.connect_write_pipe(lambda: WriteRecorder(loop),
                                              open(w, "wb", 0))
        try:
            assert isinstance(tr, asyncio.ReadTransport)
            assert not isinstance(tr, asyncio.WriteTransport)
            for name in ("write", "writelines", "write_eof", "can_write_eof",
                         "abort", "get_write_buffer_size",
                         "set_write_buffer_limits", "get_write_buffer_limits"):
                assert not hasattr(tr, name), name
            assert isinstance(wt, asyncio.WriteTransport)
            for name in ("write", "writelines", "write_eof", "abort",
                         "get_write_buffer_size"):
                assert hasattr(wt, name), name
            wt.write(b"hello")
            while bytes(pr.data) != b"hello":
                pr.got.clear()
                await pr.got.wait()
        finally:
            wt.close()
            await pr.lost
    run(loop, main())
