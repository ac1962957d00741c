"""python -m fastloop SCRIPT [ARGS] | -m MODULE [ARGS]

Runs an unchanged asyncio program with fastloop as the default event loop:
its asyncio.run() (or new_event_loop()) gets a fastloop.Loop.
"""
import runpy
import sys

from ._policy import set_policy
from ._server_targets import adjust
from ._version import __version__

USAGE = "usage: python -m fastloop SCRIPT [ARGS...] | -m MODULE [ARGS...]"

HELP = f"""\
usage: python -m fastloop SCRIPT [ARGS...]
       python -m fastloop -m MODULE [ARGS...]
       python -m fastloop --version | --help

Run an unchanged asyncio program on fastloop (version {__version__}).

fastloop becomes the default event loop (through asyncio's event loop
policy), then SCRIPT runs as `python SCRIPT` would run it, or MODULE as
`python -m MODULE` would, with ARGS in sys.argv. Every loop the program
makes with asyncio.run(), asyncio.Runner or asyncio.new_event_loop() is a
fastloop.Loop. A program that chooses its own loop (a loop_factory, or a
server with its own loop option) keeps its choice: give it
fastloop.new_event_loop there instead (two servers are seen to, below).

arguments:
  SCRIPT      a Python file, run as __main__
  -m MODULE   a module, run as __main__ (as `python -m MODULE`)
  ARGS        passed on to the program; options after SCRIPT or MODULE
              are the program's, not fastloop's

options:
  --version   print fastloop's version and exit
  -h, --help  print this help and exit

Servers that choose their own loop (said on stderr when it happens):
  uvicorn     its --loop auto picks uvloop or asyncio's loop, never the
              policy: with no --loop given, fastloop adds
              --loop fastloop:new_event_loop
  hypercorn   its worker processes start without fastloop: with no
              --workers given, fastloop adds --workers 0 (serve in this
              process)

In code instead: fastloop.run(main()), or on 3.12+
asyncio.run(main(), loop_factory=fastloop.new_event_loop).
"""


def main(argv):
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(HELP, end="")
        return 0
    if argv[0] == "--version":
        print(f"fastloop {__version__}")
        return 0
    set_policy()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = [argv[1], *adjust(argv[1], argv[2:])]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = [argv[0], *adjust(argv[0], argv[1:])]
        sys.path.insert(0, __import__("os").path.dirname(argv[0]) or ".")
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
