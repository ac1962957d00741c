"""A Handle the cyclic collector has cleared, touched before it is freed
(issue #10, S5: confirmed).

The collector calls tp_clear on every object of a garbage cycle, then frees
them; an object whose clear drops the last reference to another one can run
Python code in the middle (here a weakref.finalize callback registered by a
finalizer, which runs after the collector cleared the old weakrefs). That
code can reach a handle that was already cleared but is still alive. The
handle's clear left its callback NULL while `cancelled` stayed false, so
`_run()` called NULL, and left its loop NULL, which repr(), cancel(),
`_run()` and the error report dereference.
"""
import sys

import pytest

from fl_support import describe, run_py

SCRIPT = r'''
import asyncio, gc, sys, weakref
WHICH = sys.argv[1]
if IMPL == "fastloop":
    import fastloop
    Handle = fastloop.Handle
else:
    Handle = asyncio.Handle

box = {}

def touch():
    h = box["wr"]()
    print("TOUCH alive:", h is not None, flush=True)
    if h is None:
        return
    ops = [("repr", repr), ("cancelled", lambda h: h.cancelled()),
           ("get_context", lambda h: h.get_context()),
           ("_run", lambda h: h._run()), ("_loop", lambda h: h._loop),
           ("_callback", lambda h: h._callback), ("_args", lambda h: h._args),
           ("cancel", lambda h: h.cancel()), ("repr again", repr)]
    for name, op in ops:
        print("OP", name, flush=True)
        try:
            op(h)
        except Exception:
            pass

class Finalizer:
    def __del__(self):
        # Runs in the collector's finalize phase, before anything is
        # cleared: a weakref made now survives into the clearing phase.
        box["wr"] = weakref.ref(self.handle)
        weakref.finalize(self.trigger, touch)
        del self.handle, self.trigger

class Obj:
    pass

def build(loop):
    if WHICH == "args":
        # The handle's own clear drops its args: their death runs touch().
        trigger = Obj()
        handle = Handle(print, (trigger,), loop)
    else:
        # The loop dies when the handle lets go of it (before the fix).
        trigger = new_loop()
        handle = Handle(print, (), trigger)
    cycle = Obj()               # made after the handle: cleared after it
    cycle.self = cycle
    cycle.keep = (handle,)      # a tuple has no tp_clear: the handle lives on
    fin = Finalizer()
    fin.handle, fin.trigger = handle, trigger
    cycle.fin = fin

loop = new_loop()
loop.set_exception_handler(lambda lp, ctx: None)
gc.collect()
gc.disable()
build(loop)
gc.collect()
gc.enable()
loop.close()
print("DONE", flush=True)
'''


@pytest.mark.parametrize("which", ["args", "loop"])
def test_cleared_handle_touched_during_collection(impl, which):
    proc = run_py(SCRIPT, impl, args=[which], pyargs=["-W", "ignore"])
    ops = [ln for ln in proc.stdout.splitlines() if ln.startswith("OP ")]
    assert proc.returncode == 0 and "DONE" in proc.stdout, (
        f"crashed at {ops[-1:]}: {describe(proc)}")
    if which == "args" and sys.version_info < (3, 14):
        # The scenario really reached a cleared, live handle (3.14's
        # collector orders its work differently and does not get there).
        assert "TOUCH alive: True" in proc.stdout, describe(proc)
        assert "OP repr again" in proc.stdout, describe(proc)
