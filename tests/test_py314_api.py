"""The API of CPython 3.14 and 3.15, on both loops.

- Policies: deprecated on 3.14 and 3.15 (fastloop.EventLoopPolicy and
  fastloop.install() warn as asyncio.DefaultEventLoopPolicy and
  asyncio.set_event_loop_policy() do), gone on 3.16.
- Servers and connections run in contexts (3.15: a server's connections
  run in copies of the context of the server's creation, and all the
  callbacks of a transport in one context).
- TaskGroup.cancel() (3.15).

Every behaviour test runs on asyncio's loop and on fastloop and expects
the same.
"""
import asyncio
import contextvars
import sys

import pytest

from fl_support import describe, run, run_py

PY314 = sys.version_info >= (3, 14)
PY315 = sys.version_info >= (3, 15)
PY316 = sys.version_info >= (3, 16)

needs_315 = pytest.mark.skipif(not PY315, reason="3.15+ API")


# ---- policies ---------------------------------------------------------------

# The deprecated policy class of each implementation, and the call that
# installs a policy.
POLICY_CLASS = {"asyncio": "asyncio.DefaultEventLoopPolicy",
                "fastloop": "fastloop.EventLoopPolicy"}
INSTALL = {"asyncio": "asyncio.set_event_loop_policy(policy())",
           "fastloop": "fastloop.install()"}


def run_warnings(code, impl):
    """Run code (after `import fastloop`) recording warnings; return the
    result and [(category, message, filename)] of those it emitted."""
    proc = run_py(f"""
        import fastloop, warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            exec(compile({code!r}, "<user code>", "exec"))
        for x in w:
            print(x.category.__name__, "|", x.message, "|", x.filename)
    """, impl)
    assert proc.returncode == 0, describe(proc)
    return [tuple(part.strip() for part in line.split("|"))
            for line in proc.stdout.splitlines()]


@pytest.mark.skipif(PY316, reason="policies are gone on 3.16")
def test_policy_class_access_warns_as_asyncio(impl):
    name = POLICY_CLASS[impl]
    got = run_warnings(f"{name}\n{name}\n", impl)
    if not PY314:
        assert got == []
        return
    # Every access warns, naming the attribute and its removal, and
    # points at the code that made it.
    msg = f"{name!r} is deprecated and slated for removal in Python 3.16"
    assert got == [("DeprecationWarning", msg, "<user code>")] * 2


@pytest.mark.skipif(PY316, reason="policies are gone on 3.16")
def test_policy_class_from_import_warns_as_asyncio(impl):
    module, _, attr = POLICY_CLASS[impl].partition(".")
    got = run_warnings(f"from {module} import {attr}\n", impl)
    # (A package's from-import looks the name up twice: two warnings.)
    categories = {w[0] for w in got}
    assert categories == ({"DeprecationWarning"} if PY314 else set())


def test_star_import_does_not_warn(impl):
    # asyncio's deprecated policy classes left its __all__ on 3.14.
    got = run_warnings(f"from {impl} import *\n", impl)
    assert got == []


def test_policy_class_in_all_until_314():
    import fastloop
    assert ("EventLoopPolicy" in fastloop.__all__) is (not PY314)
    assert ("install" in fastloop.__all__) is (not PY316)


@pytest.mark.skipif(PY316, reason="policies are gone on 3.16")
def test_install_warns_as_set_event_loop_policy(impl):
    got = run_warnings(f"""
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    policy = {POLICY_CLASS[impl]}
{INSTALL[impl]}
""", impl)
    if not PY314:
        # 3.12 and 3.13: install() alone warns (asyncio's setter does not).
        expected = (["DeprecationWarning"]
                    if impl == "fastloop" and sys.version_info >= (3, 12)
                    else [])
        assert [w[0] for w in got] == expected
        return
    assert len(got) == 1, got
    category, message, filename = got[0]
    assert category == "DeprecationWarning"
    name = "fastloop.install" if impl == "fastloop" else \
        "asyncio.set_event_loop_policy"
    assert message.startswith(
        f"{name!r} is deprecated and slated for removal in Python 3.16")
    assert filename == "<user code>"


@pytest.mark.skipif(PY316, reason="policies are gone on 3.16")
def test_install_still_installs_a_fastloop_policy():
    proc = run_py("""
        import warnings
        import fastloop
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fastloop.install()
            policy = asyncio.events._get_event_loop_policy() \\
                if hasattr(asyncio.events, "_get_event_loop_policy") \\
                else asyncio.get_event_loop_policy()
            print(isinstance(policy, fastloop.EventLoopPolicy))
        async def main():
            return type(asyncio.get_running_loop()) is fastloop.Loop
        print(asyncio.run(main()))
    """, "fastloop")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split() == ["True", "True"]


@pytest.mark.skipif(not PY316, reason="3.16+: policies are gone")
def test_policy_api_is_gone_on_316():
    import fastloop
    for name in ("EventLoopPolicy", "install"):
        with pytest.raises(AttributeError, match="removed in Python 3.16"):
            getattr(fastloop, name)


# ---- contexts of servers and connections --------------------------------------

var = contextvars.ContextVar("var", default="unset")


def tls_contexts():
    test_utils = pytest.importorskip("test.test_asyncio.utils")
    return (test_utils.simple_server_sslcontext(),
            test_utils.simple_client_sslcontext())


class Recorder(asyncio.Protocol):
    """Records var in each callback; sets it in connection_made."""

    def __init__(self, seen, done):
        self.seen = seen
        self.done = done
        seen["factory"] = var.get()

    def connection_made(self, transport):
        self.seen["connection_made"] = var.get()
        var.set("set in connection_made")
        self.transport = transport

    def data_received(self, data):
        self.seen["data_received"] = var.get()
        self.transport.close()

    def connection_lost(self, exc):
        self.seen["connection_lost"] = var.get()
        if not self.done.done():
            self.done.set_result(None)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_server_connections_run_in_the_servers_context(loop, tls):
    """3.15: each connection runs in a copy of the context current when the
    server was made (asyncio.Server captures it); before 3.15, of the one
    current when it started serving."""
    server_ssl, client_ssl = tls_contexts() if tls else (None, None)

    async def main():
        seen = {}
        done = loop.create_future()
        var.set("at creation")
        server = await loop.create_server(
            lambda: Recorder(seen, done), "127.0.0.1", 0, ssl=server_ssl,
            start_serving=False)
        var.set("at start")
        await server.start_serving()
        var.set("after start")
        addr = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(
            *addr, ssl=client_ssl, server_hostname="" if tls else None)
        writer.write(b"x")
        await asyncio.wait_for(done, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return seen, var.get()

    seen, after = run(loop, main())
    expected = "at creation" if PY315 else "at start"
    assert seen["factory"] == expected
    assert seen["connection_made"] == expected
    # Nothing a connection sets leaks into the server's code.
    assert after == "after start"


@needs_315
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_server_transport_callbacks_share_one_context(loop, tls):
    """3.15: a transport's callbacks all run in one context (what
    connection_made sets, data_received and connection_lost see), not
    shared with other connections."""
    server_ssl, client_ssl = tls_contexts() if tls else (None, None)

    async def main():
        seens = [{}, {}]
        dones = [loop.create_future(), loop.create_future()]
        made = iter(range(2))

        def factory():
            i = next(made)
            return Recorder(seens[i], dones[i])

        server = await loop.create_server(factory, "127.0.0.1", 0,
                                          ssl=server_ssl)
        addr = server.sockets[0].getsockname()
        for done in dones:
            reader, writer = await asyncio.open_connection(
                *addr, ssl=client_ssl, server_hostname="" if tls else None)
            writer.write(b"x")
            await asyncio.wait_for(done, 10)
            writer.close()
        server.close()
        await server.wait_closed()
        return seens

    for seen in run(loop, main()):
        assert seen == {"factory": "unset", "connection_made": "unset",
                        "data_received": "set in connection_made",
                        "connection_lost": "set in connection_made"}


@needs_315
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_client_transport_callbacks_share_one_context(loop, tls):
    """3.15: create_connection's transport runs its callbacks in one copy
    of the caller's context."""
    server_ssl, client_ssl = tls_contexts() if tls else (None, None)

    async def handler(reader, writer):
        writer.write(b"hello")
        await writer.drain()
        await reader.read()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0,
                                            ssl=server_ssl)
        addr = server.sockets[0].getsockname()
        seen = {}
        done = loop.create_future()
        var.set("caller")
        await loop.create_connection(
            lambda: Recorder(seen, done), *addr, ssl=client_ssl,
            server_hostname="" if tls else None)
        await asyncio.wait_for(done, 10)
        server.close()
        await server.wait_closed()
        return seen, var.get()

    seen, after = run(loop, main())
    assert seen == {"factory": "caller", "connection_made": "caller",
                    "data_received": "set in connection_made",
                    "connection_lost": "set in connection_made"}
    assert after == "caller"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_connect_accepted_socket_and_unix_server(loop, tls, tmp_path):
    """The other ways to make a connection or a server, with 3.15's context
    arguments: connect_accepted_socket and a Unix server."""
    import socket
    server_ssl, client_ssl = tls_contexts() if tls else (None, None)

    async def main():
        path = str(tmp_path / "sock")
        got = loop.create_future()

        async def handler(reader, writer):
            got.set_result(await reader.readexactly(2))
            writer.close()

        server = await asyncio.start_unix_server(handler, path,
                                                 ssl=server_ssl)
        reader, writer = await asyncio.open_unix_connection(
            path, ssl=client_ssl, server_hostname="" if tls else None)
        writer.write(b"hi")
        assert await asyncio.wait_for(got, 10) == b"hi"
        writer.close()
        server.close()
        await server.wait_closed()

        a, b = socket.socketpair()
        seen = {}
        done = loop.create_future()
        transport, _ = await loop.connect_accepted_socket(
            lambda: Recorder(seen, done), a)
        b.send(b"x")
        await asyncio.wait_for(done, 10)
        b.close()
        return seen

    seen = run(loop, main())
    assert seen["factory"] == seen["connection_made"] == "unset"


# ---- TaskGroup.cancel() (3.15) -------------------------------------------------

@needs_315
def test_taskgroup_cancel_from_a_callback(loop):
    async def main():
        async with asyncio.TaskGroup() as tg:
            child = tg.create_task(asyncio.sleep(10))
            loop.call_soon(tg.cancel)
            await asyncio.sleep(10)
        return child.cancelled(), asyncio.current_task().cancelling()

    assert run(loop, main()) == (True, 0)


@needs_315
def test_taskgroup_cancel_from_another_task_and_thread(loop):
    import threading

    async def main():
        tg = asyncio.TaskGroup()

        async def other():
            await asyncio.sleep(0)
            threading.Thread(
                target=loop.call_soon_threadsafe, args=(tg.cancel,)).start()

        helper = asyncio.create_task(other())
        async with tg:
            tg.create_task(asyncio.sleep(10))
            await loop.create_future()
        await helper
        return asyncio.current_task().cancelling()

    assert run(loop, main()) == 0


@needs_315
def test_taskgroup_cancel_before_enter_and_in_body(loop):
    async def main():
        counts = []
        for early in (True, False):
            tg = asyncio.TaskGroup()
            if early:
                tg.cancel()
            n = 0
            async with tg:
                if not early:
                    tg.cancel()
                    tg.cancel()     # idempotent
                n += 1
                await asyncio.sleep(0)
                n += 1
            tg.cancel()             # after exit: nothing
            counts.append(n)
        return counts, asyncio.current_task().cancelling()

    assert run(loop, main()) == ([1, 1], 0)


@needs_315
def test_taskgroup_cancel_keeps_an_outer_cancellation(loop):
    async def main():
        cancelling = asyncio.Event()
        release = asyncio.Event()

        async def child():
            try:
                await asyncio.sleep(10)
            finally:
                cancelling.set()
                await release.wait()

        async def body():
            async with asyncio.TaskGroup() as tg:
                tg.create_task(child())
                await asyncio.sleep(0)
                tg.cancel()

        task = asyncio.create_task(body())
        await cancelling.wait()
        task.cancel("outer")
        release.set()
        try:
            await task
        except asyncio.CancelledError as exc:
            return exc.args

    assert run(loop, main()) == ("outer",)


@needs_315
@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"),
                    reason="eager tasks are 3.12+")
def test_taskgroup_cancel_from_an_eager_child(loop, impl):
    import fastloop
    factory = (fastloop.eager_task_factory if impl == "fastloop"
               else asyncio.eager_task_factory)

    async def main():
        loop.set_task_factory(factory)

        async def child(tg):
            tg.cancel()
            await asyncio.sleep(10)

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(child(tg))
        return task.cancelled(), asyncio.current_task().cancelling()

    assert run(loop, main()) == (True, 0)
