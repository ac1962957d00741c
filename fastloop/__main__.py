"""python -m fastloop SCRIPT [ARGS] | -m MODULE [ARGS]

Runs an unchanged asyncio program with fastloop as the default event loop:
its asyncio.run() (or new_event_loop()) gets a fastloop.Loop.
"""
import runpy
import sys

from ._policy import set_policy

USAGE = "usage: python -m fastloop SCRIPT [ARGS...] | -m MODULE [ARGS...]"


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    set_policy()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, __import__("os").path.dirname(argv[0]) or ".")
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
