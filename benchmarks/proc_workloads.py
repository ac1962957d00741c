"""The subprocess workloads (group "proc", kept out of the default run).

    spawn_seq        spawn `true` and wait for it, N times one after another.
    spawn_par20      the same, 20 children at a time.
    cat_100mb        pipe N MiB through `cat` with Process.communicate().

Each uses asyncio.create_subprocess_exec, so every loop runs the same code;
the time includes fork/exec, which the kernel's cost dominates, so the
ratios measure what the loop adds around it: pipe setup, noticing the exit
(pidfd, child watcher thread or SIGCHLD) and moving the bytes.

cat_100mb is bound by the kernel's copying (system time is ~90% of it on
every loop) and a run lasts a fifth of a second, so it takes the best of at
least 7. uvloop gives the child socketpairs (bigger buffers than a pipe's
64 KiB); fastloop keeps real pipes, as asyncio does, so that a child sees a
FIFO (`cat /dev/stdin` works), and grows a pipe to 1 MiB once it carries
bulk data.

workloads.py registers everything in WORKLOADS; this module does not import
it, so that `python -m benchmarks.workloads` sees one registry.
"""
import asyncio
import time

PIPE = asyncio.subprocess.PIPE
PAR = 20
MIB = 1 << 20


def _check(condition, message):
    if not condition:
        raise AssertionError(message)


async def _spawn_true():
    p = await asyncio.create_subprocess_exec("true")
    return await p.wait()


def spawn_seq(loop, n):
    async def main():
        codes = 0
        for _ in range(n):
            codes += await _spawn_true()
        return codes

    t0 = time.perf_counter()
    codes = loop.run_until_complete(main())
    seconds = time.perf_counter() - t0
    _check(codes == 0, "a child failed")
    return {"ops": n, "seconds": seconds}


def spawn_par20(loop, n):
    async def worker(count):
        codes = 0
        for _ in range(count):
            codes += await _spawn_true()
        return codes

    async def main():
        shares = [n // PAR + (1 if i < n % PAR else 0) for i in range(PAR)]
        return sum(await asyncio.gather(*(worker(c) for c in shares)))

    t0 = time.perf_counter()
    codes = loop.run_until_complete(main())
    seconds = time.perf_counter() - t0
    _check(codes == 0, "a child failed")
    return {"ops": n, "seconds": seconds}


def cat_mib(loop, n):
    data = bytes(range(256)) * (MIB // 256) * n

    async def main():
        p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, _ = await p.communicate(data)
        return len(out), p.returncode

    t0 = time.perf_counter()
    size, code = loop.run_until_complete(main())
    seconds = time.perf_counter() - t0
    _check(size == len(data) and code == 0, f"cat returned {size} bytes, code {code}")
    return {"ops": n, "seconds": seconds}


def workloads():
    """(name, function, options for workloads.workload) of every proc workload."""
    return [
        ("spawn_seq", spawn_seq, dict(
            n=500, quick_n=50, full_n=2000, group="proc", target=1.0,
            unit="spawns", description="spawn `true` and wait, one at a time")),
        ("spawn_par20", spawn_par20, dict(
            n=500, quick_n=50, full_n=2000, group="proc", target=1.0,
            unit="spawns", description=f"spawn `true` and wait, {PAR} at a time")),
        ("cat_100mb", cat_mib, dict(
            n=100, quick_n=10, full_n=400, group="proc", target=1.0, min_repeat=7,
            unit="MiB", description="communicate() N MiB through `cat`")),
    ]
