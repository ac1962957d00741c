"""Event loop factories by name, and a probe that says whether a loop is usable.

    python -m benchmarks.loops NAME   prints {"ok": true, "version": ...} or
                                      {"ok": false, "reason": ...} as JSON

The runner probes each loop in a subprocess of its own, so a loop whose
extension crashes on import costs a note in the report, not the whole run.
"""
import asyncio
import json
import platform
import sys

LOOP_NAMES = ("asyncio", "uvloop", "fastloop")


def _asyncio_factory():
    # The default selector loop, whatever event loop policy is installed.
    return asyncio.new_event_loop, "stdlib " + platform.python_version()


def _uvloop_factory():
    import uvloop
    return uvloop.new_event_loop, getattr(uvloop, "__version__", "?")


def _fastloop_factory():
    import fastloop
    new = getattr(fastloop, "new_event_loop", None)
    if new is None:
        # An empty source tree imports as a namespace package.
        raise ImportError("fastloop has no new_event_loop (not built yet?)")
    return new, getattr(fastloop, "__version__", "dev")


_FACTORIES = {
    "asyncio": _asyncio_factory,
    "uvloop": _uvloop_factory,
    "fastloop": _fastloop_factory,
}


def loop_factory(name):
    """Return (new_event_loop, version string) for a loop name; raise ImportError if missing."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown loop {name!r}; known: {', '.join(LOOP_NAMES)}") from None


def new_event_loop(name):
    return loop_factory(name)[0]()


def probe(name):
    """Import the loop, run a trivial coroutine on it; return a JSON-able verdict."""
    try:
        new, version = loop_factory(name)
        loop = new()
        try:
            async def answer():
                await asyncio.sleep(0)
                return 42
            if loop.run_until_complete(answer()) != 42:
                return {"ok": False, "reason": "a trivial coroutine returned the wrong result"}
        finally:
            loop.close()
    except Exception as exc:
        return {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "version": version}


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: python -m benchmarks.loops NAME")
    print(json.dumps(probe(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
