"""fastloop in sub-interpreters (issue #10, C9).

fastloop keeps process-wide type pointers (its Future and Task types, among
others), so it refuses to load in any interpreter but the main one: at
import, a clean ImportError (Py_mod_multiple_interpreters on 3.12+, and its
own check on every version, which also covers the legacy sub-interpreters
that 3.12+ would otherwise allow). asyncio itself works in sub-interpreters;
this is where fastloop differs. The main interpreter must be untouched,
before and after the sub-interpreter is destroyed.
"""
import pytest

from fl_support import describe, run_py

SUB_CODE = r'''
import sys
sys.path.insert(0, {root!r})
try:
    import fastloop
except ImportError as exc:
    result = "ImportError"
else:
    result = "imported"
with open({out!r}, "w") as f:
    f.write(result)
'''

MAIN = r"""
import gc, os, sys, tempfile
from fl_support import ROOT
KIND = sys.argv[1]
FIRST = sys.argv[2]

def in_sub(code):
    if KIND == "legacy":
        import _testcapi
        return _testcapi.run_in_subinterp(code)
    try:
        import _interpreters as interpreters
    except ImportError:
        import _xxsubinterpreters as interpreters
    interp = interpreters.create()
    try:
        interpreters.run_string(interp, code)
    finally:
        interpreters.destroy(interp)

async def work():
    await asyncio.sleep(0)
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, 40)
    task = asyncio.ensure_future(asyncio.sleep(0, 2))
    return await fut + await task

def main_works(tag):
    import fastloop
    loop = fastloop.new_event_loop()
    try:
        print(tag, loop.run_until_complete(work()),
              isinstance(loop.create_future(), fastloop.Future), flush=True)
    finally:
        loop.close()

if FIRST == "main":
    main_works("before")
out = tempfile.mktemp()
in_sub(SUB_CODE.format(root=ROOT, out=out))
with open(out) as f:
    print("sub", f.read(), flush=True)
os.unlink(out)
gc.collect()
main_works("after")
"""


def _subinterp_kinds():
    kinds = ["legacy"]
    try:
        import _interpreters  # noqa: F401
        kinds.append("isolated")
    except ImportError:
        try:
            import _xxsubinterpreters  # noqa: F401
            kinds.append("isolated")
        except ImportError:
            pass
    return kinds


@pytest.mark.parametrize("first", ["main", "sub"])
@pytest.mark.parametrize("kind", _subinterp_kinds())
def test_subinterpreter_import_refused_main_untouched(kind, first):
    pytest.importorskip("_testcapi")
    code = "SUB_CODE = " + repr(SUB_CODE) + "\n" + MAIN
    proc = run_py(code, "fastloop", args=(kind, first),
                  env={"PYTHONPATH": __import__("os").path.dirname(__file__)})
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.split("\n")
    expected = (["before 42 True"] if first == "main" else []) + [
        "sub ImportError", "after 42 True", ""]
    assert lines == expected, describe(proc)
