"""Side-by-side benchmarks of asyncio's default loop, uvloop and fastloop.

    python -m benchmarks.run [--quick] [--only a,b] [--loops asyncio,uvloop,fastloop]

Files, one concern each:
    loops.py      make an event loop by name; report whether a loop is usable
    workloads.py  the workloads and their registry; runs one (workload, loop) pair
    run.py        runs every pair in fresh subprocesses, best of K repeats
    report.py     the tables printed at the end
"""
