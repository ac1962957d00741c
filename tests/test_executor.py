"""run_in_executor, default executor, getaddrinfo / getnameinfo."""
import asyncio
import concurrent.futures
import socket
import sys
import threading
import warnings

import pytest

from fl_support import PY311, PY312, run


def test_run_in_executor_default(loop):
    main_thread = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident()

    fut = loop.run_in_executor(None, work, 1, 2)
    assert asyncio.isfuture(fut)
    assert fut.get_loop() is loop
    result, tid = run(loop, fut)
    assert result == 3
    assert tid != main_thread


def test_run_in_executor_exception(loop):
    def work():
        raise ZeroDivisionError("in thread")

    with pytest.raises(ZeroDivisionError, match="in thread"):
        run(loop, loop.run_in_executor(None, work))


def test_run_in_executor_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="custom-exec") as ex:
        name = run(loop, loop.run_in_executor(
            ex, lambda: threading.current_thread().name))
    assert name.startswith("custom-exec")


def test_default_executor_thread_name(loop):
    name = run(loop, loop.run_in_executor(
        None, lambda: threading.current_thread().name))
    assert name.startswith("asyncio")


def test_run_in_executor_many(loop):
    async def main():
        return await asyncio.gather(
            *[loop.run_in_executor(None, pow, i, 2) for i in range(50)])

    assert run(loop, main()) == [i * i for i in range(50)]


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="my-default")
    loop.set_default_executor(ex)
    try:
        name = run(loop, loop.run_in_executor(
            None, lambda: threading.current_thread().name))
        assert name.startswith("my-default")
        assert loop._default_executor is ex
    finally:
        ex.shutdown(wait=True)


@pytest.mark.skipif(not PY311, reason="3.10 only warns")
def test_set_default_executor_rejects_non_thread_pool(loop):
    class NotAThreadPool(concurrent.futures.Executor):
        pass

    with pytest.raises(TypeError, match="^executor must be "
                                        "ThreadPoolExecutor instance$"):
        loop.set_default_executor(NotAThreadPool())
    with pytest.raises(TypeError):
        loop.set_default_executor(None)


@pytest.mark.skipif(PY311, reason="3.11+ raises TypeError")
def test_set_default_executor_non_thread_pool_warns_310(loop):
    class NotAThreadPool(concurrent.futures.Executor):
        pass

    with pytest.warns(DeprecationWarning, match="ThreadPoolExecutor is "
                                                "deprecated"):
        loop.set_default_executor(NotAThreadPool())


def test_shutdown_default_executor(loop):
    run(loop, loop.run_in_executor(None, lambda: None))
    ex = loop._default_executor
    assert ex is not None
    run(loop, loop.shutdown_default_executor())
    # asyncio keeps the (shut down) executor object; it refuses new work
    with pytest.raises(RuntimeError):
        ex.submit(print)
    with pytest.raises(RuntimeError, match="^Executor shutdown has been "
                                           "called$"):
        loop.run_in_executor(None, print)


def test_shutdown_default_executor_without_executor(loop):
    run(loop, loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="^Executor shutdown has been "
                                           "called$"):
        loop.run_in_executor(None, print)


def test_shutdown_default_executor_custom_executor_still_allowed(loop):
    run(loop, loop.shutdown_default_executor())
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert run(loop, loop.run_in_executor(ex, lambda: 5)) == 5


def test_shutdown_default_executor_waits_for_work(loop):
    done = []

    def work():
        import time
        time.sleep(0.05)
        done.append(1)

    loop.run_in_executor(None, work)
    run(loop, loop.shutdown_default_executor())
    assert done == [1]


@pytest.mark.skipif(not PY312, reason="timeout= is 3.12+")
def test_shutdown_default_executor_timeout_not_reached(loop):
    run(loop, loop.run_in_executor(None, lambda: None))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        run(loop, loop.shutdown_default_executor(timeout=5))


# 3.12.1 awaits the shutdown future without the timeout (only the thread
# join is bounded), so a blocked worker blocks it; 3.13 bounds the wait.
@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="3.12's timeout does not bound a blocked worker")
def test_shutdown_default_executor_timeout(loop):
    gate = threading.Event()
    try:
        loop.run_in_executor(None, gate.wait, 10)
        with pytest.warns(RuntimeWarning, match="The executor did not "
                                                "finishing joining its "
                                                "threads within 0.05 seconds"):
            run(loop, loop.shutdown_default_executor(timeout=0.05))
    finally:
        gate.set()


def test_close_shuts_down_default_executor(loop):
    run(loop, loop.run_in_executor(None, lambda: None))
    ex = loop._default_executor
    loop.close()
    with pytest.raises(RuntimeError):
        ex.submit(print)


def test_run_in_executor_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_in_executor(None, print)


def test_run_in_executor_result_after_cancel(loop):
    gate = threading.Event()

    async def main():
        fut = loop.run_in_executor(None, gate.wait, 5)
        fut.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await fut

    run(loop, main())


# ------------------------------------------------------------ resolver

def _same(a, b):
    return sorted(a) == sorted(b)


@pytest.mark.parametrize("host,port,kw", [
    ("127.0.0.1", 80, {}),
    ("127.0.0.1", "80", {"type": socket.SOCK_STREAM}),
    ("::1", 443, {"family": socket.AF_INET6}),
    ("::1", 0, {}),
    ("localhost", 8080, {"type": socket.SOCK_STREAM}),
    ("localhost", 53, {"family": socket.AF_INET, "proto": socket.IPPROTO_UDP}),
    (None, 80, {"flags": socket.AI_PASSIVE}),
    ("127.0.0.1", None, {}),
])
def test_getaddrinfo_matches_socket(loop, host, port, kw):
    expected = socket.getaddrinfo(host, port, **kw)
    got = run(loop, loop.getaddrinfo(host, port, **kw))
    assert isinstance(got, list)
    assert _same(got, expected)
    for family, type_, proto, canon, addr in got:
        assert isinstance(family, socket.AddressFamily)
        assert isinstance(type_, socket.SocketKind)


def test_getaddrinfo_error(loop):
    with pytest.raises(socket.gaierror):
        run(loop, loop.getaddrinfo("not a numeric host", 80,
                                   flags=socket.AI_NUMERICHOST))


def test_getaddrinfo_bad_port_type(loop):
    with pytest.raises((TypeError, OSError)):
        run(loop, loop.getaddrinfo("127.0.0.1", 1.5))


@pytest.mark.parametrize("sockaddr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 8080), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 443, 0, 0), socket.NI_NUMERICHOST),
])
def test_getnameinfo_matches_socket(loop, sockaddr, flags):
    expected = socket.getnameinfo(sockaddr, flags)
    got = run(loop, loop.getnameinfo(sockaddr, flags))
    assert got == expected


def test_getnameinfo_bad_address(loop):
    with pytest.raises((TypeError, socket.gaierror, OSError)):
        run(loop, loop.getnameinfo("127.0.0.1"))


def test_getaddrinfo_closed_loop(loop):
    loop.close()
    coro = loop.getaddrinfo("127.0.0.1", 80)
    try:
        # asyncio's getaddrinfo is a coroutine: it cannot be run on a closed
        # loop, and run_in_executor inside it would refuse anyway.
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            loop.run_until_complete(coro)
    finally:
        coro.close()
