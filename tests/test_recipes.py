"""The README's recipes, each run against the real package from PyPI
(fastloop only: each checks that the loop it ends up on is fastloop.Loop).

Servers run in a subprocess on a free port, answer one request with the
loop they serve on, and are stopped (SIGINT, then SIGKILL after a time
limit). A package missing for this Python skips its recipe with the reason.
"""
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import unittest
import urllib.request

import pytest

import fastloop
from fl_support import ROOT, describe, subprocess_env

PY313 = sys.version_info >= (3, 13)

# An ASGI app (no framework): its one answer is "OURS MODULE.CLASS" for the
# running loop, OURS being whether it is fastloop.Loop.
ASGI_APP = '''\
import asyncio
import fastloop

def loop_report():
    loop = asyncio.get_running_loop()
    cls = type(loop)
    return f"{cls is fastloop.Loop} {cls.__module__}.{cls.__qualname__}"

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = loop_report().encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''

FASTLOOP_LOOP = "True fastloop._loop.Loop"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server command run in `cwd` until stop(); its output goes to a file
    (a pipe nobody reads could fill and stall it)."""

    def __init__(self, cmd, cwd, env=None):
        self.port = _free_port()
        self.cmd = [str(part).replace("{port}", str(self.port)) for part in cmd]
        self.log = open(os.path.join(cwd, "server.log"), "w+")
        self.proc = subprocess.Popen(
            self.cmd, cwd=cwd, env=env or _env(cwd), stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path="/", timeout=30):
        """The body of GET path, waiting for the server to come up."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{path}"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return response.read().decode()
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no answer from {self.cmd}:\n{self.stop()}")
                time.sleep(0.05)

    def stop(self):
        """Stop the server (its whole process group); its output."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.seek(0)
        output = self.log.read()
        self.log.close()
        return output


@contextlib.contextmanager
def serving(cmd, cwd, env=None):
    server = Server(cmd, cwd, env)
    try:
        yield server
    finally:
        if not server.log.closed:
            server.stop()


def _env(cwd):
    # The app's directory first, then the checkout (for fastloop).
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), env["PYTHONPATH"]])
    env["HOME"] = str(cwd)      # nothing a server writes lands in ~ ...
    env.pop("XDG_RUNTIME_DIR", None)    # ... or in the session's runtime dir
    return env


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "app.py").write_text(ASGI_APP)
    return tmp_path


def _python_m_fastloop(*args):
    return [sys.executable, "-m", "fastloop", *args]


# --- uvicorn ---

def test_uvicorn_loop_option(app_dir):
    pytest.importorskip("uvicorn")
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--port", "{port}",
           "--loop", "fastloop:new_event_loop"]
    with serving(cmd, app_dir) as server:
        assert server.get() == FASTLOOP_LOOP


def test_python_m_fastloop_gives_uvicorn_the_loop_option(app_dir):
    # uvicorn's default, --loop auto, picks uvloop when it is installed
    # (and asyncio's SelectorEventLoop otherwise), whatever the policy says.
    pytest.importorskip("uvicorn")
    cmd = _python_m_fastloop("-m", "uvicorn", "app:app", "--port", "{port}")
    with serving(cmd, app_dir) as server:
        assert server.get() == FASTLOOP_LOOP
        output = server.stop()
    assert "fastloop: uvicorn chooses its own event loop" in output, output
    assert "--loop fastloop:new_event_loop" in output, output


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_python_m_fastloop_keeps_an_explicit_uvicorn_loop_and_warns(app_dir, choice):
    pytest.importorskip("uvicorn")
    pytest.importorskip(choice)
    cmd = _python_m_fastloop("-m", "uvicorn", "app:app", "--port", "{port}",
                             f"--loop={choice}")
    with serving(cmd, app_dir) as server:
        ours, cls = server.get().split()
        output = server.stop()
    assert ours == "False" and cls.startswith(choice), cls
    assert f"uvicorn --loop {choice} makes its own loop" in output, output


# --- hypercorn ---

def test_python_m_fastloop_serves_hypercorn_in_process(app_dir):
    pytest.importorskip("hypercorn")
    cmd = _python_m_fastloop("-m", "hypercorn", "app:app",
                             "--bind", "127.0.0.1:{port}")
    with serving(cmd, app_dir) as server:
        assert server.get() == FASTLOOP_LOOP
        output = server.stop()
    assert "with --workers 0" in output, output


def test_hypercorn_serve_in_fastloop_run(app_dir):
    pytest.importorskip("hypercorn")
    (app_dir / "serve.py").write_text(textwrap.dedent('''\
        import sys
        import fastloop
        from hypercorn.asyncio import serve
        from hypercorn.config import Config
        from app import app

        config = Config()
        config.bind = [f"127.0.0.1:{sys.argv[1]}"]
        fastloop.run(serve(app, config))
        '''))
    with serving([sys.executable, "serve.py", "{port}"], app_dir) as server:
        assert server.get() == FASTLOOP_LOOP


# --- aiohttp ---

def test_aiohttp_run_app_with_a_fastloop_loop(tmp_path):
    pytest.importorskip("aiohttp")
    (tmp_path / "server.py").write_text(textwrap.dedent('''\
        import asyncio, sys
        import fastloop
        from aiohttp import web

        async def which_loop(request):
            cls = type(asyncio.get_running_loop())
            return web.Response(text=f"{cls is fastloop.Loop} "
                                     f"{cls.__module__}.{cls.__qualname__}")

        app = web.Application()
        app.router.add_get("/", which_loop)
        web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]),
                    loop=fastloop.new_event_loop(), print=None)
        '''))
    with serving([sys.executable, "server.py", "{port}"], tmp_path) as server:
        assert server.get() == FASTLOOP_LOOP


# --- gunicorn with uvicorn workers ---

def test_gunicorn_with_a_fastloop_uvicorn_worker(app_dir):
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    (app_dir / "fastloop_worker.py").write_text(textwrap.dedent('''\
        from uvicorn_worker import UvicornWorker

        class FastloopUvicornWorker(UvicornWorker):
            CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS,
                             "loop": "fastloop:new_event_loop"}
        '''))
    cmd = [sys.executable, "-m", "gunicorn", "app:app",
           "--worker-class", "fastloop_worker.FastloopUvicornWorker",
           "--workers", "2", "--bind", "127.0.0.1:{port}"]
    from gunicorn.config import KNOWN_SETTINGS
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        cmd.append("--no-control-socket")   # gunicorn 25.1+: no control socket
    with serving(cmd, app_dir) as server:
        # Either worker may answer; each runs the same class, so two
        # answers show the same loop.
        assert server.get() == FASTLOOP_LOOP
        assert server.get() == FASTLOOP_LOOP
        output = server.stop()
    assert "Booting worker" in output, output
    assert not (app_dir / ".gunicorn").exists()


# --- in-process recipes ---

def test_anyio_run_with_loop_factory():
    anyio = pytest.importorskip("anyio")

    async def main():
        await anyio.sleep(0)
        return type(asyncio.get_running_loop())

    loop_type = anyio.run(main, backend="asyncio",
                          backend_options={"loop_factory": fastloop.new_event_loop})
    assert loop_type is fastloop.Loop


def test_asyncio_runner_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=fastloop.new_event_loop) as runner:
        assert runner.run(main()) is fastloop.Loop


@pytest.mark.skipif(not PY313, reason="IsolatedAsyncioTestCase.loop_factory is 3.13+")
def test_isolated_asyncio_test_case_loop_factory():
    seen = []

    class Case(unittest.IsolatedAsyncioTestCase):
        loop_factory = fastloop.Loop

        async def test_loop(self):
            seen.append(type(asyncio.get_running_loop()))

    result = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(Case))
    assert result.wasSuccessful() and seen == [fastloop.Loop]


def test_python_m_fastloop_m_unittest(tmp_path):
    # Any version: before 3.13 IsolatedAsyncioTestCase has no loop_factory,
    # but it makes its loop through the policy, which this sets.
    (tmp_path / "test_case.py").write_text(textwrap.dedent('''\
        import asyncio, unittest
        import fastloop

        class Case(unittest.IsolatedAsyncioTestCase):
            async def test_loop(self):
                self.assertIs(type(asyncio.get_running_loop()), fastloop.Loop)
        '''))
    proc = subprocess.run(_python_m_fastloop("-m", "unittest", "-v", "test_case"),
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert "Ran 1 test" in proc.stderr and "OK" in proc.stderr, describe(proc)


def test_pytest_asyncio_loop_factories_hook_in_conftest(tmp_path):
    # The recipe for a project that wants fastloop always, without the
    # plugin: its own conftest.py answers pytest-asyncio's hook.
    pytest.importorskip("pytest_asyncio")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent('''\
        import fastloop

        def pytest_asyncio_loop_factories(config, item):
            return {"fastloop": fastloop.new_event_loop}
        '''))
    (tmp_path / "test_it.py").write_text(textwrap.dedent('''\
        import asyncio
        import fastloop
        import pytest

        @pytest.mark.asyncio
        async def test_loop():
            assert type(asyncio.get_running_loop()) is fastloop.Loop
        '''))
    env = _env(tmp_path)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert "1 passed" in proc.stdout, describe(proc)


# --- python -m fastloop's handling of server arguments (no server run) ---

@pytest.mark.parametrize("target, args, expected, said", [
    ("uvicorn", ["app:app"], ["--loop", "fastloop:new_event_loop", "app:app"],
     "--loop fastloop:new_event_loop"),
    ("uvicorn", ["app:app", "--loop", "none"], ["app:app", "--loop", "none"], ""),
    ("uvicorn", ["--loop=fastloop:Loop", "app:app"], ["--loop=fastloop:Loop", "app:app"], ""),
    ("uvicorn", ["--help"], ["--help"], ""),
    ("/venv/bin/uvicorn", ["--loop", "auto", "a:b"], ["--loop", "auto", "a:b"],
     "uvicorn --loop auto makes its own loop"),
    ("uvicorn", ["a:b", "--", "--loop", "x"], ["--loop", "fastloop:new_event_loop",
                                               "a:b", "--", "--loop", "x"], "uvicorn chooses"),
    ("hypercorn", ["app:app"], ["--workers", "0", "app:app"], "with --workers 0"),
    ("hypercorn", ["-w0", "app:app"], ["-w0", "app:app"], ""),
    ("hypercorn", ["-w", "4", "app:app"], ["-w", "4", "app:app"], "hypercorn --workers 4"),
    ("hypercorn", ["--workers=2", "app:app"], ["--workers=2", "app:app"],
     "hypercorn --workers 2"),
    ("hypercorn", ["-k", "uvloop", "app:app"], ["-k", "uvloop", "app:app"],
     "--worker-class uvloop"),
    ("hypercorn", ["--reload", "app:app"], ["--reload", "app:app"], "--reload needs"),
    ("hypercorn.py", ["--worker-class=asyncio", "a:b"],
     ["--workers", "0", "--worker-class=asyncio", "a:b"], "with --workers 0"),
    ("gunicorn", ["app:app"], ["app:app"], ""),
    ("uvicornish", ["app:app"], ["app:app"], ""),
])
def test_server_target_arguments(capsys, target, args, expected, said):
    from fastloop._server_targets import adjust
    assert adjust(target, args) == expected
    err = capsys.readouterr().err
    if said:
        assert err.startswith("fastloop: ") and said in err, err
    else:
        assert err == ""


def test_help_names_the_server_targets():
    proc = subprocess.run(_python_m_fastloop("--help"), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, describe(proc)
    for needed in ("uvicorn", "--loop fastloop:new_event_loop", "hypercorn",
                   "--workers 0"):
        assert needed in proc.stdout, needed
