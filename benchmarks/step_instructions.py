"""Instructions per task step, counted by callgrind (stable on a busy machine).

    python -m benchmarks.step_instructions [--loop fastloop|asyncio|uvloop]

Runs two task workloads twice each under `valgrind --tool=callgrind`, with
N and 2N steps, and prints (I(2N) - I(N)) / N: the cost of one step without
start-up. `sleep0`: a task awaiting asyncio.sleep(0) (a bare yield);
`future`: a task awaiting a future that a call_soon callback resolves (the
wait, wakeup and awaited-by bookkeeping). Needs valgrind on the PATH.
"""
import argparse
import os
import re
import subprocess
import sys

WORKLOAD = r"""
import asyncio, sys
kind, n, loop_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
async def sleep0():
    for _ in range(n):
        await asyncio.sleep(0)
async def future():
    loop = asyncio.get_running_loop()
    for _ in range(n):
        f = loop.create_future()
        loop.call_soon(f.set_result, None)
        await f
if loop_name == "fastloop":
    import fastloop
    factory = fastloop.new_event_loop
elif loop_name == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
else:
    factory = asyncio.new_event_loop
loop = factory()
loop.run_until_complete({"sleep0": sleep0, "future": future}[kind]())
loop.close()
"""


def instructions(kind, n, loop_name):
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", WORKLOAD, kind, str(n), loop_name],
        capture_output=True, text=True, env=env, check=True)
    return int(re.search(r"Collected : (\d+)", proc.stderr).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", default="fastloop",
                        choices=("fastloop", "asyncio", "uvloop"))
    parser.add_argument("-n", type=int, default=50_000)
    args = parser.parse_args()
    version = "%d.%d" % sys.version_info[:2]
    for kind in ("sleep0", "future"):
        a = instructions(kind, args.n, args.loop)
        b = instructions(kind, 2 * args.n, args.loop)
        print(f"{version} {args.loop:8} {kind:7} {(b - a) / args.n:8.1f} instructions/step")


if __name__ == "__main__":
    main()
