"""fastloop's type stubs (fastloop only: not parametrized).

The stubs must name what the runtime modules have, no more and no less, and
mypy --strict must accept them with typed code that uses the public API
(tests/typing_example.py) and reject code that misuses it.
"""
import ast
import importlib
import inspect
import os
import subprocess
import sys
import types
import warnings

import pytest

from fl_support import ROOT, describe, subprocess_env

STUBS = {
    "fastloop": os.path.join(ROOT, "fastloop", "__init__.pyi"),
    "fastloop._core": os.path.join(ROOT, "fastloop", "_core.pyi"),
}


# --- reading a stub: its names on this Python version ---

def _version_test(node):
    """The value of `sys.version_info >= (3, 12)` (or <, >, <=) on this
    Python, or None for any other condition."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and ast.unparse(node.left) == "sys.version_info"):
        return None
    bound = ast.literal_eval(node.comparators[0])
    op = type(node.ops[0])
    compare = {ast.GtE: lambda a, b: a >= b, ast.Lt: lambda a, b: a < b,
               ast.Gt: lambda a, b: a > b, ast.LtE: lambda a, b: a <= b}[op]
    return compare(sys.version_info, bound)


def _statements(body):
    """The statements that apply on this Python: version tests resolved."""
    for node in body:
        if isinstance(node, ast.If):
            taken = _version_test(node.test)
            assert taken is not None, f"stub condition not understood: {ast.unparse(node.test)}"
            yield from _statements(node.body if taken else node.orelse)
        else:
            yield node


def _defined_names(body):
    """Names a stub body defines: {name: node}. Imports count only in the
    re-export form `from x import y as y` (PEP 484's rule for stubs)."""
    names = {}
    for node in _statements(body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names[target.id] = node
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname == alias.name:
                    names[alias.name] = node
    return names


def _stub(module_name):
    with open(STUBS[module_name], encoding="utf-8") as f:
        return _defined_names(ast.parse(f.read()).body)


def _public(names):
    return {n for n in names if not n.startswith("_")}


def _runtime_public(module):
    """The module's public names: what dir() and __all__ show, less the
    submodules (fastloop.pytest_plugin, once imported, is not API)."""
    names = set(dir(module)) | set(getattr(module, "__all__", ()))
    return {n for n in _public(names)
            if not isinstance(getattr(module, n, None), types.ModuleType)}


def _get(obj, name, *default):
    # fastloop.EventLoopPolicy warns on 3.14+ (asyncio's policies are
    # deprecated there); existing is all that is asked here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(obj, name, *default)


_MISSING = object()


def _has(obj, name):
    return _get(obj, name, _MISSING) is not _MISSING


# --- the names ---

@pytest.mark.parametrize("module_name", sorted(STUBS))
def test_stub_names_match_runtime(module_name):
    module = importlib.import_module(module_name)
    stub = _public(_stub(module_name))
    runtime = _runtime_public(module)
    assert runtime - stub == set(), f"public in {module_name} but missing from its stub"
    assert {n for n in stub if not _has(module, n)} == set(), \
        f"in the stub of {module_name} but not in the module"


def test_dunder_version_is_typed():
    import fastloop
    assert "__version__" in _stub("fastloop")
    assert fastloop.__version__ == importlib.import_module("fastloop._version").__version__


def _stub_classes():
    """(module name, class name, stub class node) for every class in a stub."""
    for module_name in sorted(STUBS):
        for name, node in _stub(module_name).items():
            if isinstance(node, ast.ClassDef):
                yield module_name, name, node


@pytest.mark.parametrize("module_name,class_name,node",
                         list(_stub_classes()), ids=lambda v: getattr(v, "name", v))
def test_stub_class_members_match_runtime(module_name, class_name, node):
    """Each member a stub class declares exists at runtime; each public
    member the runtime class defines itself is declared in the stub, unless
    it overrides an asyncio base class's member (typeshed types those)."""
    cls = _get(importlib.import_module(module_name), class_name)
    if not inspect.isclass(cls):
        pytest.fail(f"{module_name}.{class_name} is not a class at runtime")
    declared = _public(_defined_names(node.body))
    assert {n for n in declared if not _has(cls, n)} == set(), \
        f"declared in the stub of {class_name} but missing at runtime"
    asyncio_bases = [b for b in cls.__mro__[1:]
                     if b.__module__.split(".")[0] in ("asyncio", "_asyncio")]
    own = _public(vars(cls))
    undeclared = {n for n in own - declared
                  if not any(hasattr(b, n) for b in asyncio_bases)}
    assert undeclared == set(), f"{class_name} has members its stub does not declare"


def test_loop_stub_covers_the_abstract_loop():
    # Loop's stub must make every abstract method of AbstractEventLoop
    # concrete, or mypy refuses fastloop.Loop(); the mypy run below checks
    # that too, this names the gap directly.
    import asyncio
    loop_names = _defined_names(_stub("fastloop")["Loop"].body)
    core_names = _defined_names(_stub("fastloop._core")["LoopCore"].body)
    abstract = _public(vars(asyncio.AbstractEventLoop))
    missing = {n for n in abstract if n not in loop_names and n not in core_names
               and callable(getattr(asyncio.AbstractEventLoop, n))}
    assert missing == set()


def test_py_typed_marker_is_there():
    assert os.path.isfile(os.path.join(ROOT, "fastloop", "py.typed"))


# --- mypy --strict ---

def _mypy(tmp_path, *paths):
    pytest.importorskip("mypy", reason="mypy is in tests/requirements.txt")
    # From the checkout, so mypy finds fastloop's stubs (and checks them as
    # first-party code: an error inside them fails the run too).
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "mypy-cache"),
         "--python-version", "%d.%d" % sys.version_info[:2], *paths],
        cwd=ROOT, env=subprocess_env("fastloop"), capture_output=True, text=True,
        timeout=600)


def test_mypy_strict_accepts_the_example(tmp_path):
    proc = _mypy(tmp_path, "tests/typing_example.py")
    assert proc.returncode == 0, describe(proc)


def test_mypy_strict_rejects_misuse(tmp_path):
    # The stubs really type the API (not Any): misuse is caught.
    bad = tmp_path / "bad_usage.py"
    bad.write_text(
        "import asyncio\nimport fastloop\n\n\n"
        "async def one() -> int:\n    return 1\n\n\n"
        "text: str = fastloop.run(one())\n"
        "loop: fastloop.Loop = asyncio.new_event_loop()\n"
        "fastloop.new_event_loop().call_later('soon', print)\n")
    proc = _mypy(tmp_path, str(bad))
    assert proc.returncode == 1, describe(proc)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["9", "10", "11"], describe(proc)


def test_typing_example_runs():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "typing_example.py")],
                          env=subprocess_env("fastloop"), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, describe(proc)
    fastloop = importlib.import_module("fastloop")
    assert proc.stdout.split() == ["done", "3", "ping", "Loop", "5", "True", "7", "9",
                                   fastloop.__version__]
