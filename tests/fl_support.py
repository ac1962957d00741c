"""Helpers shared by the fastloop test-suite (not a test module).

Subprocess helpers run a snippet in a fresh interpreter with the project on
sys.path; the snippet gets a ``new_loop()`` that builds a loop of the
implementation under test (``asyncio`` or ``fastloop``).
"""
import os
import subprocess
import sys
import textwrap

import asyncio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMPLS = ("asyncio", "fastloop")

PRELUDE = '''\
import asyncio, os, sys
IMPL = os.environ.get("FL_TEST_IMPL", "asyncio")
def loop_factory():
    if IMPL == "fastloop":
        import fastloop
        return fastloop.new_event_loop
    return asyncio.new_event_loop
def new_loop():
    return loop_factory()()
'''


def subprocess_env(impl="asyncio", extra=None):
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT + (os.pathsep + pp if pp else "")
    env["FL_TEST_IMPL"] = impl
    if extra:
        env.update(extra)
    return env


def script_text(code):
    return PRELUDE + textwrap.dedent(code)


def run_py(code, impl="asyncio", *, timeout=30, env=None, args=(), pyargs=()):
    """Run ``code`` (dedented, with the prelude) in a fresh interpreter."""
    cmd = [sys.executable, *pyargs, "-c", script_text(code), *args]
    return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(impl, env),
                          capture_output=True, text=True, timeout=timeout)


def popen_py(code, impl="asyncio", *, env=None, pyargs=()):
    cmd = [sys.executable, *pyargs, "-c", script_text(code)]
    return subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(impl, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def describe(proc):
    """Text for an assertion message: exit code, stdout and stderr."""
    return (f"rc={proc.returncode}\n--- stdout ---\n{proc.stdout}"
            f"\n--- stderr ---\n{proc.stderr}")


def run_until(loop, cond, timeout=2.0):
    """Run the loop until cond() is true (checked every 5 ms) or timeout."""
    deadline = loop.time() + timeout

    def check():
        if cond() or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_later(0.005, check)

    loop.call_soon(check)
    loop.run_forever()


def run(loop, coro_or_future, timeout=10):
    """run_until_complete with a time limit that uses the loop's own timers."""
    return loop.run_until_complete(asyncio.wait_for(coro_or_future, timeout))


PY310 = sys.version_info[:2] == (3, 10)
PY311 = sys.version_info >= (3, 11)
PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


class Recorder(asyncio.Protocol):
    """An app protocol that records its callbacks ("made", "eof", "lost",
    "pause", "resume") and the bytes it got (echoing them when `echo` is
    set); futures for made/eof/lost; eof_received returns `eof_result`."""

    def __init__(self, loop, echo=False):
        self.loop = loop
        self.echo = echo
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.eof_result = None

    def connection_made(self, tr):
        self.events.append("made")
        self.transport = tr
        self.made.set_result(tr)

    def data_received(self, data):
        assert isinstance(data, bytes)
        self._got(data)

    def _got(self, data):
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append("eof")
        if not self.eof.done():
            self.eof.set_result(None)
        return self.eof_result

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
