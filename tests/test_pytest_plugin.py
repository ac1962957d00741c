"""fastloop.pytest_plugin (fastloop only: not parametrized over loops).

Each test runs a real small suite (pytest-asyncio, anyio, unittest's
IsolatedAsyncioTestCase) in a fresh pytest process. Every inner test and
async fixture writes down which loop it ran on; the outer test checks that
it was fastloop.Loop with `-p fastloop.pytest_plugin` and with `--fastloop`
(through the pytest11 entry point pyproject.toml declares), and that it was
not without them. The baseline is asyncio's own loop: the same suite run
without the plugin.
"""
import asyncio
import os
import re
import subprocess
import sys
import textwrap

import pytest

from fl_support import ROOT, describe, subprocess_env

try:
    import tomllib
except ImportError:      # pragma: no cover (3.11+ has it)
    tomllib = None

PY313 = sys.version_info >= (3, 13)

# Imported by every inner test: one line per test or fixture,
# "KIND:WHAT OURS CLASS" (KIND from the test file test_KIND.py).
RECORD_HELPER = '''\
import asyncio, os
import fastloop

def record(what):
    """Write down the running loop; the test file's name gives the kind."""
    import inspect
    kind = os.path.basename(inspect.stack()[1].filename)[len("test_"):-len(".py")]
    loop = asyncio.get_running_loop()
    with open(os.environ["FL_LOOP_RECORD"], "a") as f:
        f.write(f"{kind}:{what} {type(loop) is fastloop.Loop} {type(loop).__qualname__}\\n")
'''

SUITES = {
    "pytest_asyncio": ("pytest_asyncio", '''\
        import pytest, pytest_asyncio
        from _record import record

        @pytest_asyncio.fixture
        async def resource():
            record("fixture")
            yield
            record("fixture-teardown")

        @pytest.mark.asyncio
        async def test_function(resource):
            record("test")

        class TestClass:
            @pytest.mark.asyncio(loop_scope="class")
            async def test_in_class_scope(self):
                record("class-scope")
        '''),
    "anyio": ("anyio", '''\
        import pytest
        from _record import record

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.fixture
        async def resource(anyio_backend):
            record("fixture")
            yield
            record("fixture-teardown")

        @pytest.mark.anyio
        async def test_function(resource):
            record("test")

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", [("asyncio", {"debug": True})])
        async def test_with_options(anyio_backend):
            import asyncio
            assert asyncio.get_running_loop().get_debug()   # options kept
            record("with-options")
        '''),
    "unittest": (None, '''\
        import unittest
        from _record import record

        class Case(unittest.IsolatedAsyncioTestCase):
            async def asyncSetUp(self):
                record("asyncSetUp")

            async def test_method(self):
                record("test")

            async def asyncTearDown(self):
                record("asyncTearDown")
        '''),
}

EXPECTED = {
    "pytest_asyncio": {"fixture", "fixture-teardown", "test", "class-scope"},
    "anyio": {"fixture", "fixture-teardown", "test", "with-options"},
    "unittest": {"asyncSetUp", "test", "asyncTearDown"},
}

# A project whose tests choose their loop themselves keeps that choice.
OWN_CHOICE = {
    "conftest.py": '''\
        import asyncio

        def pytest_asyncio_loop_factories(config, item):
            return {"own": asyncio.SelectorEventLoop}
        ''',
    "test_own.py": '''\
        import asyncio, sys, unittest
        import pytest
        from _record import record

        @pytest.mark.asyncio
        async def test_pytest_asyncio():
            record("pytest-asyncio")

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", [
            ("asyncio", {"loop_factory": asyncio.SelectorEventLoop})])
        async def test_anyio(anyio_backend):
            record("anyio")

        @unittest.skipIf(sys.version_info < (3, 13), "loop_factory is 3.13+")
        class Case(unittest.IsolatedAsyncioTestCase):
            loop_factory = asyncio.SelectorEventLoop

            async def test_method(self):
                record("unittest")
        ''',
}


def _entry_point_site(tmp_path):
    """A directory that, on sys.path, makes importlib.metadata see fastloop
    installed with the pytest11 entry points pyproject.toml declares (as
    `pip install` would write them), without building or installing."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        points = tomllib.load(f)["project"]["entry-points"]["pytest11"]
    info = tmp_path / "site" / "fastloop-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastloop\nVersion: 0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in points.items())
    (info / "entry_points.txt").write_text("[pytest11]\n" + lines)
    return str(tmp_path / "site")


def _run_suite(tmp_path, files, args, path=()):
    """Run pytest on `files` (name -> source) in a fresh process, with the
    directories `path` first on sys.path; return (process, {what: (ours,
    class name)})."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "_record.py").write_text(RECORD_HELPER)
    (suite / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for name, source in files.items():
        (suite / name).write_text(textwrap.dedent(source))
    record = tmp_path / "record.txt"
    record.write_text("")
    env = subprocess_env()
    for name in ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join([*path, _entry_point_site(tmp_path), str(suite),
                                         env["PYTHONPATH"]])
    env["FL_LOOP_RECORD"] = str(record)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=suite, env=env, capture_output=True, text=True, timeout=60)
    seen = {}
    for line in record.read_text().splitlines():
        what, ours, cls = line.split()
        assert what not in seen, f"{what} recorded twice"
        seen[what] = (ours == "True", cls)
    return proc, seen


MODES = {"-p": ["-p", "fastloop.pytest_plugin"], "--fastloop": ["--fastloop"],
         # -p registers the module; --fastloop must not register it again
         "-p and --fastloop": ["-p", "fastloop.pytest_plugin", "--fastloop"],
         "no flag": []}


@pytest.mark.skipif(tomllib is None, reason="needs tomllib")
@pytest.mark.parametrize("mode", MODES)
def test_suites_run_on_fastloop_only_with_the_plugin(tmp_path, mode):
    # One pytest process runs the three suites (a process costs about a
    # second); a tool that is not installed leaves its suite out.
    kinds = [kind for kind, (needs, _) in SUITES.items()
             if needs is None or _importable(needs)]
    files = {f"test_{kind}.py": SUITES[kind][1] for kind in kinds}
    proc, seen = _run_suite(tmp_path, files, ["-v", *MODES[mode]])
    assert proc.returncode == 0, describe(proc)
    assert "warnings summary" not in proc.stdout, describe(proc)
    assert set(seen) == {f"{kind}:{what}" for kind in kinds for what in EXPECTED[kind]}, \
        describe(proc)
    on_fastloop = mode != "no flag"
    for what, (ours, cls) in seen.items():
        assert ours is on_fastloop, f"{what} ran on {cls}\n{describe(proc)}"
    # The header says how each tool is reached, and only with the plugin on.
    header = [line for line in proc.stdout.splitlines() if line.startswith("fastloop ")]
    assert len(header) == on_fastloop, describe(proc)
    if on_fastloop:
        parts = ["IsolatedAsyncioTestCase through"]
        if "pytest_asyncio" in kinds:
            parts.append("pytest-asyncio through its loop factory hook")
        if "anyio" in kinds:
            parts.append("anyio's asyncio backend through its loop_factory")
        for part in parts:
            assert part in header[0], header[0]


@pytest.mark.skipif(tomllib is None, reason="needs tomllib")
def test_tests_that_choose_their_loop_keep_it(tmp_path):
    pytest.importorskip("pytest_asyncio")
    pytest.importorskip("anyio")
    proc, seen = _run_suite(tmp_path, OWN_CHOICE, ["--fastloop"])
    assert proc.returncode == 0, describe(proc)
    expected = {"own:pytest-asyncio", "own:anyio"} | ({"own:unittest"} if PY313 else set())
    assert set(seen) == expected, describe(proc)
    for what, (ours, cls) in seen.items():
        assert not ours and "Selector" in cls, f"{what} ran on {cls}"


@pytest.mark.skipif(tomllib is None, reason="needs tomllib")
@pytest.mark.skipif(not hasattr(asyncio, "set_event_loop_policy"),
                    reason="no event loop policies on this Python")
def test_pytest_asyncio_before_the_loop_factory_hook(tmp_path):
    # pytest-asyncio before 1.4 has no pytest_asyncio_loop_factories: the
    # plugin goes through the policy. That version comes from PyPI into a
    # directory of its own, put before the installed one.
    pytest.importorskip("pytest_asyncio")
    old = tmp_path / "old-pytest-asyncio"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "--target", str(old), "pytest-asyncio>=1.0,<1.4"],
        capture_output=True, text=True, timeout=120)
    if pip.returncode != 0:
        pytest.skip(f"pytest-asyncio<1.4 could not be installed: {pip.stderr[-300:]}")
    proc, seen = _run_suite(tmp_path, {"test_pytest_asyncio.py": SUITES["pytest_asyncio"][1]},
                            ["-v", "--fastloop"], path=[str(old)])
    assert proc.returncode == 0, describe(proc)
    used = re.search(r"plugins: .*\basyncio-(\d+)\.(\d+)", proc.stdout)
    assert used and (int(used[1]), int(used[2])) < (1, 4), describe(proc)
    assert "pytest-asyncio through the event loop policy" in proc.stdout, describe(proc)
    # (Those versions warn themselves on 3.14+, at import: not fastloop's.)
    _, _, warned = proc.stdout.partition("warnings summary")
    assert "fastloop" not in warned, describe(proc)
    assert set(seen) == {f"pytest_asyncio:{w}" for w in EXPECTED["pytest_asyncio"]}
    assert all(ours for ours, _ in seen.values()), seen


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def test_entry_point_registers_only_the_option():
    # What `pytest` loads from an installed fastloop: an object with two
    # hooks, no fixtures, that turns the plugin on only for --fastloop.
    from fastloop import pytest_plugin
    hooks = sorted(n for n in dir(pytest_plugin.flag_plugin) if n.startswith("pytest_"))
    assert hooks == ["pytest_addoption", "pytest_configure"]
