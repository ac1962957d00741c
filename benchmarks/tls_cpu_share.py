"""Where the TLS echo server's CPU goes: OpenSSL, the ssl module, the loop, the interpreter.

    python -m benchmarks.tls_cpu_share [--loop fastloop] [--size 64k] [-n 200]

Runs the tls_echo_<size> server (benchmarks/net_workloads.py, the C OpenSSL
load client in a process of its own, not measured) under
`valgrind --tool=callgrind` twice, with N and 2N requests, and charges each
instruction to the object file it ran in (self cost, not inclusive). The
difference of the two runs is the cost of N requests without start-up,
imports and the handshakes; it prints instructions per request and each
share, by group and by object:

    OpenSSL       libcrypto, libssl (the record layer and AES-GCM)
    _ssl          CPython's ssl module (SSLObject, MemoryBIO)
    loop          fastloop's _core.so, or uvloop's extension
    interpreter   libpython / the python executable (asyncio.sslproto runs here)
    copies        memcpy/memmove/memset (libc's, wherever they are called from)
    libc          malloc and the rest of libc and the dynamic loader
    other         anything else (libev, ...)

Instructions are not time (memcpy's `rep movsb` counts one per byte, and
AES-NI instructions do a lot each), but they are stable on a busy machine.
Needs valgrind on the PATH; takes about a minute at the default N.
"""
import argparse
import collections
import glob
import os
import re
import subprocess
import sys
import tempfile

from benchmarks.load_client import build_c_client

GROUPS = (
    ("OpenSSL", re.compile(r"lib(crypto|ssl)\.so")),
    ("_ssl", re.compile(r"/_ssl[.].*so$")),
    ("loop", re.compile(r"(fastloop/_core|uvloop/loop)[.].*so$")),
    ("interpreter", re.compile(r"libpython|/python3?[.0-9]*$")),
    ("libc", re.compile(r"/(libc|libm|ld-linux[^/]*)[.]so|/ld-linux")),
)


COPIES = re.compile(r"^(__)?(mem(cpy|move|set)|__memcpy_chk)")


def group_of(obj, fn=""):
    if COPIES.match(fn):
        return "copies"
    for name, pattern in GROUPS:
        if pattern.search(obj):
            return name
    return "other"


def self_cost_by_function(path):
    """{(object file, function): instructions executed in it} from a
    callgrind output file."""
    names = {}           # "(id)" -> name, for compressed names (one space
                         # for objects and files, one for functions)
    fnames = {}
    costs = collections.Counter()
    obj = fn = "???"
    skip_next_cost = False
    with open(path, errors="replace") as f:
        for line in f:
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip_next_cost:       # the inclusive cost of a call: not ours
                    skip_next_cost = False
                    continue
                fields = line.split()
                if len(fields) > 1:
                    costs[obj, fn] += int(fields[1])
            elif line.startswith("ob="):
                obj = _name(names, line[3:].strip())
            elif line.startswith("fn="):
                fn = _name(fnames, line[3:].strip())
            elif line.startswith("calls="):
                skip_next_cost = True
            elif line.startswith("cob="):
                _name(names, line[4:].strip())   # may define a compressed name
            elif line.startswith("cfn="):
                _name(fnames, line[4:].strip())
    return costs


def _name(names, text):
    match = re.match(r"(\(\d+\))\s*(.*)", text)
    if not match:
        return text
    key, name = match.groups()
    if name:
        names[key] = name
    return names.get(key, key)


def profile(loop, size, n, workdir):
    """Per-object self cost of one server run of n requests."""
    out = os.path.join(workdir, f"cg-{n}.%p")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           sys.executable, "-m", "benchmarks.tls_cpu_share", "--serve", loop, size, str(n)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the server under callgrind failed ({proc.returncode}):\n{stderr[-3000:]}")
    # The server process's own file (a forked child, if any, writes another).
    path = os.path.join(workdir, f"cg-{n}.{proc.pid}")
    if not os.path.exists(path):
        path = max(glob.glob(os.path.join(workdir, f"cg-{n}.*")), key=os.path.getsize)
    return self_cost_by_function(path)


def serve(loop_name, size, n):
    """The server side, run under callgrind: one tls_echo run of n requests."""
    from benchmarks.loops import new_event_loop
    from benchmarks.net_workloads import echo
    loop = new_event_loop(loop_name)
    try:
        # No time bound: under callgrind the server runs ~50x slower.
        result = echo("protocol", size, tls=True)(loop, n, max_seconds=3600)
    finally:
        loop.close()
    if result["ops"] != n:
        raise SystemExit(f"the client made {result['ops']} requests, not {n}")


def report(loop, size, n, small, large):
    diff = {key: large.get(key, 0) - small.get(key, 0) for key in set(small) | set(large)}
    groups = collections.Counter()
    objects = collections.Counter()
    for (obj, fn), v in diff.items():
        groups[group_of(obj, fn)] += v
        objects[obj] += v
    total = sum(groups.values())
    print(f"{loop}, tls_echo_{size}, Python {sys.version.split()[0]}: "
          f"{total / n:,.0f} instructions per request in the server "
          f"(callgrind, {2 * n} minus {n} requests)")
    print(f"  {'group':12} {'instr/request':>14} {'share':>7}")
    for name, v in groups.most_common():
        print(f"  {name:12} {v / n:14,.0f} {v / total:7.1%}")
    print("  by object file (self cost, copies included):")
    for obj, v in objects.most_common(12):
        if v / total >= 0.001:
            print(f"    {v / total:6.1%}  {obj}")
    print("  (callgrind counts a `rep movsb` copy one instruction per byte: copies weigh far\n"
          "  more here than in time)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tls_cpu_share",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--loop", default="fastloop", choices=("fastloop", "asyncio", "uvloop"))
    parser.add_argument("--size", default="64k", choices=("1k", "64k"))
    parser.add_argument("-n", type=int, default=200, help="requests in the smaller run (default 200)")
    parser.add_argument("--serve", nargs=3, metavar=("LOOP", "SIZE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        loop, size, n = args.serve
        serve(loop, size, int(n))
        return 0
    build_c_client(tls=True)   # compile the client now, not under callgrind
    with tempfile.TemporaryDirectory(prefix="tls-cpu-share-") as workdir:
        small = profile(args.loop, args.size, args.n, workdir)
        large = profile(args.loop, args.size, 2 * args.n, workdir)
    report(args.loop, args.size, args.n, small, large)
    return 0


if __name__ == "__main__":
    sys.exit(main())
