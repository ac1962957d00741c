"""fastloop's public API (fastloop only: not parametrized)."""
import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from fl_support import ROOT, PY311, PY312, describe, run_py, subprocess_env

fastloop = None


@pytest.fixture(autouse=True)
def _import_fastloop():
    # Imported per test, not at collection: a broken build then fails each
    # test here instead of aborting the whole session's collection.
    global fastloop
    import fastloop as fl
    fastloop = fl

PY313 = sys.version_info >= (3, 13)


async def _main(x=1):
    await asyncio.sleep(0.001)
    return type(asyncio.get_running_loop()), x


def test_loop_is_abstract_event_loop_subclass():
    assert issubclass(fastloop.Loop, asyncio.AbstractEventLoop)


def test_new_event_loop():
    loop = fastloop.new_event_loop()
    try:
        assert type(loop) is fastloop.Loop
        assert not loop.is_closed() and not loop.is_running()
        asyncio.set_event_loop(loop)      # needs a real subclass
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_new_event_loop_distinct():
    a, b = fastloop.new_event_loop(), fastloop.new_event_loop()
    try:
        assert a is not b
    finally:
        a.close()
        b.close()


def test_run_returns_result():
    assert fastloop.run(_main(7)) == (fastloop.Loop, 7)


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug(debug):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert fastloop.run(main(), debug=debug) is debug


def test_run_propagates_exception():
    async def main():
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        fastloop.run(main())


def test_run_rejects_non_coroutine():
    with pytest.raises((TypeError, ValueError)):
        fastloop.run(42)


def test_run_inside_running_loop():
    async def outer():
        coro = _main()
        try:
            fastloop.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="cannot be called from a running "
                                           "event loop"):
        fastloop.run(outer())


def test_run_cancels_leftover_tasks_and_closes_loop():
    seen = {}

    async def forever():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    async def main():
        asyncio.get_running_loop().create_task(forever())
        seen["loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0)

    fastloop.run(main())
    assert seen["cancelled"] is True
    assert seen["loop"].is_closed()


@pytest.mark.skipif(not PY312, reason="loop_factory= is 3.12+")
def test_stdlib_run_loop_factory():
    assert asyncio.run(_main(3), loop_factory=fastloop.new_event_loop) == \
        (fastloop.Loop, 3)


@pytest.mark.skipif(not PY311, reason="asyncio.Runner is 3.11+")
def test_stdlib_runner_loop_factory():
    with asyncio.Runner(loop_factory=fastloop.new_event_loop) as runner:
        assert type(runner.get_loop()) is fastloop.Loop
        assert runner.run(_main(1)) == (fastloop.Loop, 1)
        assert runner.run(_main(2)) == (fastloop.Loop, 2)


def test_python_m_fastloop_runs_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        async def main():
            print(type(asyncio.get_running_loop()).__module__,
                  type(asyncio.get_running_loop()).__name__)
            print(sys.argv)
            print(__name__)
        asyncio.run(main())
    """))
    proc = subprocess.run([sys.executable, "-m", "fastloop", str(script), "arg",
                           "--flag"], cwd=ROOT, env=subprocess_env("fastloop"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[1] == "Loop" and lines[0].startswith("fastloop")
    assert lines[1] == repr([str(script), "arg", "--flag"])
    assert lines[2] == "__main__"


def test_python_m_fastloop_script_exit_code(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import asyncio, sys\n"
                      "async def main():\n    sys.exit(3)\n"
                      "asyncio.run(main())\n")
    proc = subprocess.run([sys.executable, "-m", "fastloop", str(script)],
                          cwd=ROOT, env=subprocess_env("fastloop"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3, describe(proc)


def test_import_emits_no_warning():
    proc = subprocess.run([sys.executable, "-W", "error", "-c",
                           "import fastloop; fastloop.new_event_loop().close();"
                           " print('ok')"],
                          cwd=ROOT, env=subprocess_env("fastloop"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "ok"


def test_event_loop_policy_is_lazy():
    proc = run_py("""
        import fastloop
        print("EventLoopPolicy" in vars(fastloop))
        policy_cls = fastloop.EventLoopPolicy
        print("EventLoopPolicy" in vars(fastloop))
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = policy_cls()
        loop = policy.new_event_loop()
        print(type(loop) is fastloop.Loop)
        loop.close()
        print(isinstance(policy, asyncio.AbstractEventLoopPolicy))
    """, "fastloop")
    assert proc.returncode == 0, describe(proc)
    # 3.14+: not kept in the module, so that every access warns, as
    # asyncio.DefaultEventLoopPolicy's does (tests/test_py314_api.py).
    cached = str(sys.version_info < (3, 14))
    assert proc.stdout.split() == ["False", cached, "True", "True"]


def test_install_sets_policy():
    proc = run_py("""
        import warnings
        import fastloop
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fastloop.install()
        print(sorted({x.category.__name__ for x in w
                      if "fastloop" in str(x.message)}))
        print(type(asyncio.get_event_loop_policy()).__name__)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = asyncio.new_event_loop()
        print(type(loop) is fastloop.Loop)
        loop.close()
        async def main():
            return type(asyncio.get_running_loop()) is fastloop.Loop
        print(asyncio.run(main()))
    """, "fastloop")
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    if PY312:
        assert lines[0] == "['DeprecationWarning']"
    else:
        assert lines[0] == "[]"
    assert lines[1] == "EventLoopPolicy"
    assert lines[2:4] == ["True", "True"]


# A plain function stored as a class attribute becomes a method, so the
# documented spelling is a class (like asyncio.EventLoop) or a staticmethod.
@pytest.mark.skipif(not PY313, reason="loop_factory class attribute is 3.13+")
@pytest.mark.parametrize("factory", ["fastloop.Loop",
                                     "staticmethod(fastloop.new_event_loop)"])
def test_isolated_test_case_loop_factory(factory):
    proc = run_py(f"""
        import unittest, fastloop
        class T(unittest.IsolatedAsyncioTestCase):
            loop_factory = {factory}
            async def test_loop(self):
                self.assertIs(type(asyncio.get_running_loop()), fastloop.Loop)
                await asyncio.sleep(0.001)
        result = unittest.main(exit=False, argv=["x"]).result
        print("OK" if result.wasSuccessful() and result.testsRun == 1 else "BAD")
    """, "fastloop")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip().endswith("OK"), describe(proc)


def test_handle_types_exported():
    loop = fastloop.new_event_loop()
    try:
        h = loop.call_soon(print)
        th = loop.call_later(10, print)
        assert isinstance(h, fastloop.Handle)
        assert isinstance(th, fastloop.TimerHandle)
        h.cancel()
        th.cancel()
    finally:
        loop.close()


def test_loop_subclassable():
    class MyLoop(fastloop.Loop):
        pass

    loop = MyLoop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, "sub")) == "sub"
    finally:
        loop.close()
