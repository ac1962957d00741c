"""The benchmark workloads, and a command that runs one of them on one loop.

    python -m benchmarks.workloads WORKLOAD LOOP [--n N]   prints one JSON object
    python -m benchmarks.workloads --list

A workload is a function (loop, n) -> dict with at least "ops" and "seconds";
it times only its own work (not interpreter start-up or loop creation) and
checks its result, so a loop that skips work fails instead of looking fast.
Workloads use only asyncio's public API, so they run on every loop.

A workload may instead return {"skipped": why} when this machine cannot run
it, and a loop that raises NotImplementedError for a method the workload
needs gets {"not_implemented": message}: the harness reports both, and
neither counts as a failure.

To add a workload, write the function and decorate it with @workload(...).
The network workloads live in net_workloads.py and are registered at the end
of this file, in the group "net" (the rest are in "core"; see GROUPS).
"""
import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from benchmarks import net_workloads, proc_workloads
from benchmarks.loops import LOOP_NAMES, new_event_loop


@dataclass(frozen=True)
class Workload:
    name: str
    func: Callable
    description: str
    n: int                       # default size
    target: Optional[float]      # the ratio fastloop must reach against `baseline`;
                                 # None: reported, no target
    baseline: str = "uvloop"
    kind: str = "speed"          # "speed": ops/s, higher is better
                                 # "memory": bytes per op, lower is better
                                 # "net": ops/s as "speed", plus the server's
                                 #   CPU seconds per op (user, sys), lower is better
    unit: str = "ops"
    group: str = "core"          # "core": the default run; "net": network
                                 # workloads; "proc": subprocesses
    cpu_target: Optional[float] = None  # "net": user CPU per op vs `baseline`, at most
    repeat: Optional[int] = None  # at most this many runs per loop (a steady number)
    min_repeat: Optional[int] = None  # at least this many (a short, noisy one)
    min_python: Optional[Tuple[int, int]] = None
    quick_n: Optional[int] = None  # --quick size; default n // 10
    full_n: Optional[int] = None   # --full size; default 4 * n

    def size(self, preset="default"):
        """N for a size preset: "quick", "default" or "full"."""
        if preset == "quick":
            return self.quick_n or max(1, self.n // 10)
        if preset == "full":
            return self.full_n or 4 * self.n
        return self.n

    def skip_reason(self):
        if self.min_python and sys.version_info < self.min_python:
            return "needs Python %d.%d+" % self.min_python
        return None


REGISTRY = {}


def workload(name, *, n, target, description, **options):
    def register(func):
        REGISTRY[name] = Workload(name, func, description, n, target, **options)
        return func
    return register


def _check(condition, message):
    if not condition:
        raise AssertionError(message)


# -- speed ------------------------------------------------------------------

@workload("call_soon_chain", n=1_000_000, target=2.0, unit="callbacks",
          description="each callback schedules the next with call_soon")
def call_soon_chain(loop, n):
    remaining = n

    def step():
        nonlocal remaining
        remaining -= 1
        if remaining:
            loop.call_soon(step)
        else:
            loop.stop()

    loop.call_soon(step)
    t0 = time.perf_counter()
    loop.run_forever()
    seconds = time.perf_counter() - t0
    _check(remaining == 0, f"{remaining} callbacks did not run")
    return {"ops": n, "seconds": seconds}


@workload("timers", n=200_000, target=1.5, unit="timers",
          description="call_later with random delays < 50 ms, half cancelled at once")
def timers(loop, n):
    rng = random.Random(1234)
    delays = [rng.uniform(0.0, 0.05) for _ in range(n)]
    pending = (n + 1) // 2          # even indices are kept, odd ones cancelled
    cancelled_fired = 0

    def fire():
        nonlocal pending
        pending -= 1
        if not pending:
            loop.stop()

    def must_not_fire():
        nonlocal cancelled_fired
        cancelled_fired += 1

    t0 = time.perf_counter()
    for i, delay in enumerate(delays):
        if i % 2:
            loop.call_later(delay, must_not_fire).cancel()
        else:
            loop.call_later(delay, fire)
    loop.run_forever()
    seconds = time.perf_counter() - t0
    _check(pending == 0, f"{pending} timers did not fire")
    _check(cancelled_fired == 0, f"{cancelled_fired} cancelled timers fired")
    return {"ops": n, "seconds": seconds}


@workload("sleep0", n=400_000, target=2.0, unit="sleeps",
          description="one task awaits asyncio.sleep(0) N times")
def sleep0(loop, n):
    async def main():
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    return _timed_run(loop, main(), n, ops=n)


@workload("gather", n=200, target=2.0, unit="tasks",
          description="create 1000 tasks and gather them, N rounds")
def gather(loop, n, width=1000):
    async def child(i):
        return i

    async def main():
        total = 0
        for _ in range(n):
            results = await asyncio.gather(*[loop.create_task(child(i)) for i in range(width)])
            total += len(results)
        return total

    return _timed_run(loop, main(), n * width, ops=n * width)


@workload("future_roundtrip", n=400_000, target=2.0, unit="futures",
          description="create_future, call_soon(fut.set_result), await it; N times")
def future_roundtrip(loop, n):
    async def main():
        total = 0
        for i in range(n):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, 1)
            total += await fut
        return total

    return _timed_run(loop, main(), n, ops=n)


@workload("taskgroup", n=100, target=2.0, unit="tasks", min_python=(3, 11),
          description="TaskGroup of 1000 children, each awaits sleep(0) twice; N rounds")
def taskgroup(loop, n, width=1000):
    async def child():
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def main():
        done = 0
        for _ in range(n):
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(child()) for _ in range(width)]
            done += sum(t.done() for t in tasks)
        return done

    return _timed_run(loop, main(), n * width, ops=n * width)


def _timed_run(loop, coro, expected, *, ops):
    t0 = time.perf_counter()
    result = loop.run_until_complete(coro)
    seconds = time.perf_counter() - t0
    _check(result == expected, f"expected {expected}, got {result}")
    return {"ops": ops, "seconds": seconds}


# -- memory -----------------------------------------------------------------

@workload("task_memory", n=1_000_000, full_n=1_000_000, target=1.5, baseline="asyncio",
          kind="memory", unit="bytes/task",
          description="resident bytes per pending task, N tasks blocked on a future")
def task_memory(loop, n):
    # RSS rather than tracemalloc: it also sees memory a C loop takes with
    # plain malloc, and tracemalloc would slow task creation tenfold.
    gate = loop.create_future()
    all_started = loop.create_future()
    all_finished = loop.create_future()
    started = finished = 0

    async def blocked():
        nonlocal started, finished
        started += 1
        if started == n:
            all_started.set_result(None)
        await gate
        finished += 1
        if finished == n:
            all_finished.set_result(None)

    gc.collect()
    before = _rss_bytes()
    # A million live objects make every generational collection slow, and
    # there is no garbage to find here: collect once, by hand, to measure.
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            loop.create_task(blocked())
        loop.run_until_complete(all_started)
        seconds = time.perf_counter() - t0
        gc.collect()
        after = _rss_bytes()
        gate.set_result(None)
        loop.run_until_complete(all_finished)
    finally:
        gc.enable()
    _check(finished == n, f"{n - finished} tasks did not finish")
    return {"ops": n, "seconds": seconds, "bytes_per_op": (after - before) / n}


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- network (net_workloads.py) ----------------------------------------------

for _name, _func, _options in net_workloads.workloads():
    workload(_name, **_options)(_func)
del _name, _func, _options

# -- subprocesses (proc_workloads.py) -----------------------------------------

for _name, _func, _options in proc_workloads.workloads():
    workload(_name, **_options)(_func)
del _name, _func, _options


def _groups():
    groups = {}
    for spec in REGISTRY.values():
        groups.setdefault(spec.group, []).append(spec.name)
    groups["echo"] = [name for name in REGISTRY if name.startswith("echo_")]
    groups["all"] = list(REGISTRY)
    return groups


# Names --only accepts besides workload names; the default run is "core".
GROUPS = _groups()


# -- command line -----------------------------------------------------------

def run_one(name, loop_name, n=None):
    """Run one workload on a fresh loop of the given kind; return its result dict."""
    spec = REGISTRY[name]
    reason = spec.skip_reason()
    if reason:
        return {"workload": name, "loop": loop_name, "skipped": reason}
    n = spec.n if n is None else n
    loop = new_event_loop(loop_name)
    try:
        gc.collect()
        result = spec.func(loop, n)
    except NotImplementedError as exc:
        result = {"not_implemented": str(exc) or type(exc).__name__}
    finally:
        loop.close()
    result.update(workload=name, loop=loop_name, n=n)
    if "skipped" not in result and "not_implemented" not in result:
        result["ops_per_sec"] = result["ops"] / result["seconds"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workloads",
                                     description="Run one workload on one loop; print JSON.")
    parser.add_argument("workload", nargs="?", choices=sorted(REGISTRY))
    parser.add_argument("loop", nargs="?", choices=LOOP_NAMES)
    parser.add_argument("--n", type=int, help="size (default: the workload's own)")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = parser.parse_args(argv)
    if args.list:
        for spec in REGISTRY.values():
            print(f"{spec.name:18} {spec.group:5} N={spec.n:<9} {spec.description}")
        for group, names in GROUPS.items():
            print(f"group {group}: {', '.join(names)}")
        return
    if not (args.workload and args.loop):
        parser.error("WORKLOAD and LOOP are required")
    print(json.dumps(run_one(args.workload, args.loop, args.n)))


if __name__ == "__main__":
    main()
