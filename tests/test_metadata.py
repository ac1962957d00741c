"""The package's metadata and the runner's own options (fastloop only)."""
import os
import re
import subprocess
import sys

import pytest

from fl_support import ROOT, describe, subprocess_env

try:
    import tomllib
except ImportError:      # (3.11+ has it; kept for a clear skip elsewhere)
    tomllib = None


def _run_fastloop(*args):
    return subprocess.run([sys.executable, "-m", "fastloop", *args], cwd=ROOT,
                          env=subprocess_env("fastloop"), capture_output=True,
                          text=True, timeout=30)


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_version_has_one_source():
    import fastloop
    from fastloop import _version
    assert fastloop.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", fastloop.__version__)
    # pyproject.toml leaves the version to setup.py, which reads _version.py.
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    # No other file of the package writes it down.
    for name in os.listdir(os.path.join(ROOT, "fastloop")):
        if name.endswith((".py", ".pyi")) and name != "_version.py":
            with open(os.path.join(ROOT, "fastloop", name), encoding="utf-8") as f:
                assert fastloop.__version__ not in f.read(), name


def test_setup_py_reports_the_version():
    pytest.importorskip("setuptools")
    import fastloop
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines()[-1] == fastloop.__version__


def test_python_m_fastloop_version():
    import fastloop
    proc = _run_fastloop("--version")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == f"fastloop {fastloop.__version__}\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_python_m_fastloop_help(flag):
    proc = _run_fastloop(flag)
    assert proc.returncode == 0, describe(proc)
    text = proc.stdout
    for needed in ("python -m fastloop SCRIPT", "python -m fastloop -m MODULE",
                   "--version", "fastloop.Loop", "loop_factory"):
        assert needed in text, needed


def test_python_m_fastloop_without_arguments_is_a_usage_error():
    proc = _run_fastloop()
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == "" and proc.stderr.startswith("usage:")


def test_options_after_the_script_are_the_scripts(tmp_path):
    script = tmp_path / "show_argv.py"
    script.write_text("import sys\nprint(sys.argv[1:])\n")
    proc = _run_fastloop(str(script), "--version", "--help")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "['--version', '--help']\n"


def test_classifiers():
    project = _pyproject()["project"]
    classifiers = project["classifiers"]
    versions = sorted(c.rsplit(" :: ", 1)[1] for c in classifiers
                      if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    # Exactly the versions scripts/test runs (3.11-3.13 on the host, 3.14
    # and 3.15 in the sid chroot).
    assert versions == ["3.11", "3.12", "3.13", "3.14", "3.15"]
    assert project["requires-python"] == ">=3.11"
    assert "Typing :: Typed" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "License :: OSI Approved :: MIT License" in classifiers
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        assert f.readline().strip() == "MIT License"
