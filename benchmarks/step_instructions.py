"""Instructions per operation, counted by callgrind (stable on a busy machine).

    python -m benchmarks.step_instructions [--loop fastloop|asyncio|uvloop]
                                           [--kinds sleep0,future,...]

Runs each workload twice under `valgrind --tool=callgrind`, with N and 2N
operations, and prints (I(2N) - I(N)) / N: the cost of one operation
without start-up. `sleep0`: a task awaiting asyncio.sleep(0) (a bare
yield); `future`: a task awaiting a future that a call_soon callback
resolves (the wait, wakeup and awaited-by bookkeeping); `call_soon`: one
callback scheduled and run; `gather`: one task of a gather() of 100 tasks
that each sleep(0) once; `echo1k`: one 1 KiB round trip between two
protocol transports over a socketpair (the C read and write paths). Needs
valgrind on the PATH.
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
async def call_soon():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [n]
    def tick():
        left[0] -= 1
        if left[0]:
            loop.call_soon(tick)
        else:
            done.set_result(None)
    loop.call_soon(tick)
    await done
async def gather():
    async def one():
        await asyncio.sleep(0)
    for _ in range(n // 100):
        await asyncio.gather(*[one() for _ in range(100)])
async def echo1k():
    import socket
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    done = loop.create_future()
    payload = b"x" * 1024
    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr
        def data_received(self, data):
            self.tr.write(data)
    class Client(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr, self.got, self.left = tr, 0, n
        def data_received(self, data):
            self.got += len(data)
            if self.got < len(payload):
                return
            self.got, self.left = 0, self.left - 1
            if self.left:
                self.tr.write(payload)
            else:
                done.set_result(None)
    await loop.connect_accepted_socket(Echo, a)
    tr, client = await loop.connect_accepted_socket(Client, b)
    tr.write(payload)
    await done
    tr.close()
WORKLOADS = {"sleep0": sleep0, "future": future, "call_soon": call_soon,
             "gather": gather, "echo1k": echo1k}
if loop_name == "fastloop":
    import fastloop
    factory = fastloop.new_event_loop
elif loop_name == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
else:
    factory = asyncio.new_event_loop
loop = factory()
loop.run_until_complete(WORKLOADS[kind]())
loop.close()
"""


KINDS = ("sleep0", "future", "call_soon", "gather", "echo1k")


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
    parser.add_argument("--kinds", default="sleep0,future",
                        help="comma-separated: " + ", ".join(KINDS))
    args = parser.parse_args()
    version = "%d.%d" % sys.version_info[:2]
    for kind in args.kinds.split(","):
        if kind not in KINDS:
            parser.error("unknown kind %r" % kind)
        n = args.n if kind != "echo1k" else args.n // 5
        a = instructions(kind, n, args.loop)
        b = instructions(kind, 2 * n, args.loop)
        print(f"{version} {args.loop:8} {kind:9} {(b - a) / n:8.1f} instructions/op")


if __name__ == "__main__":
    main()
