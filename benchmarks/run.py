"""Run every workload on asyncio, uvloop and fastloop, side by side.

    python -m benchmarks.run [--quick | --full] [--repeat K] [--only a,b]
                             [--loops asyncio,uvloop,fastloop] [--json out.json]

--only takes workload names and group names: "core" (the default: loop,
timer and task workloads), "net" (the network suite: echo servers in four
styles and three message sizes, and 10,000 idle connections; about five minutes
more), "proc" (subprocesses: spawning `true` and 100 MiB through `cat`),
"echo" (the echo servers only), "tls" (TLS echo at 1 and 64 KiB and 1,000
idle TLS connections) and "all". So `--only net` runs the
network suite, `--only all` everything, `--only core,idle_conns` mixes.

Each (workload, loop) run is a fresh subprocess (python -m benchmarks.workloads),
so no loop inherits another's heap, caches or imported modules. The best of K
repeats counts; between repeats the order of the loops rotates, so a noisy
moment on the machine does not always hit the same loop.

Exit status: 0 when every run worked (missed targets included), 1 when a run
failed or crashed or a loop named by --require is not usable, 2 on bad
arguments. A loop that is not installed or not built is left out with a note. A
(workload, loop) pair whose loop raises NotImplementedError is reported as
"not implemented" and is not repeated; neither that nor a workload this
machine cannot run (skipped, with the reason) counts as a failure.
"""
import argparse
import json
import os
import signal
import subprocess
import sys

from benchmarks import report
from benchmarks.loops import LOOP_NAMES
from benchmarks.workloads import GROUPS, REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description="Benchmark asyncio, uvloop and fastloop side by side.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="preset", action="store_const", const="quick",
                      help="small N, for a fast check (numbers are noisy)")
    size.add_argument("--full", dest="preset", action="store_const", const="full",
                      help="bigger N, for steadier numbers")
    parser.set_defaults(preset="default")
    parser.add_argument("--repeat", type=int, default=3, metavar="K",
                        help="runs per (workload, loop); the best counts (default 3)")
    parser.add_argument("--only", type=_workload_names, default=GROUPS["core"], metavar="NAME,...",
                        help="workloads or groups to run (default: core); groups: "
                             + ", ".join(GROUPS) + " (python -m benchmarks.workloads --list "
                             "shows what each holds)")
    parser.add_argument("--loops", type=_names(LOOP_NAMES), default=list(LOOP_NAMES), metavar="LOOP,...",
                        help="loops to compare (default: " + ",".join(LOOP_NAMES) + ")")
    parser.add_argument("--require", type=_names(LOOP_NAMES), default=[], metavar="LOOP,...",
                        help="exit 1 if one of these loops is not usable (default: none)")
    parser.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    parser.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                        help="give up on one run after this long (default 600)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _names(known):
    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown name(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return names
    return parse


def _workload_names(text):
    """--only: workload and group names, expanded, in registry order, each once."""
    chosen = set()
    for name in _names(list(REGISTRY) + list(GROUPS))(text):
        chosen.update(GROUPS.get(name, [name]))
    return [name for name in REGISTRY if name in chosen]


def _python(args, timeout):
    """Run `python -m ...` from the project root; return (returncode, stdout, stderr)."""
    try:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout:g} s"
    return proc.returncode, proc.stdout, proc.stderr


def probe_loops(names, timeout):
    """{loop: {"ok": bool, "version" or "reason": str}}, each probed in its own process."""
    verdicts = {}
    for name in names:
        code, out, err = _python(["benchmarks.loops", name], timeout)
        try:
            verdicts[name] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            verdicts[name] = {"ok": False, "reason": _failure(code, err)}
    return verdicts


def run_pair(workload, loop, n, timeout):
    """One run in a fresh process: the workload's JSON, or {"error": why}."""
    code, out, err = _python(["benchmarks.workloads", workload, loop, "--n", str(n)], timeout)
    if code == 0:
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": "no JSON in the output: " + out[-200:]}
    return {"error": _failure(code, err)}


def _failure(code, stderr):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    if code is None:
        return stderr
    if code < 0:
        return f"killed by {_signal_name(-code)}" + (f" ({last})" if last else "")
    return last or f"exit status {code}"


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _finished(run):
    """A run that measured something (not an error, a skip or a missing method)."""
    return not ({"error", "skipped", "not_implemented"} & run.keys())


def best_run(spec, runs):
    good = [r for r in runs if _finished(r)]
    if not good:
        return None
    if spec.kind == "memory":
        return min(good, key=lambda r: r["bytes_per_op"])
    return max(good, key=lambda r: r["ops_per_sec"])


def pooled_cpu(spec, runs):
    """For "net" workloads: server CPU seconds per op over all the good runs together.

    Most kernels split CPU time into user and sys by sampling at each tick,
    so a short run's split is coarse; pooling the runs counts every sample,
    where the best of K would favour the luckiest draw."""
    good = [r for r in runs if _finished(r)]
    if spec.kind != "net" or not good:
        return None
    ops = sum(r["ops"] for r in good)
    return {"user_cpu_per_op": sum(r["user_cpu_per_op"] * r["ops"] for r in good) / ops,
            "sys_cpu_per_op": sum(r["sys_cpu_per_op"] * r["ops"] for r in good) / ops,
            "runs": len(good)}


def run_all(args, loops):
    """{workload: {loop: {"runs": [...], "best": run or None}}}, printing progress to stderr."""
    results = {}
    for name in args.only:
        spec = REGISTRY[name]
        n = spec.size(args.preset)
        reason = spec.skip_reason()
        runs = {loop: [] for loop in loops}
        if reason:
            _progress(f"{name}: skipped ({reason})")
        else:
            repeat = min(args.repeat, spec.repeat or args.repeat)
            repeat = max(repeat, spec.min_repeat or repeat)
            for k in range(repeat):
                order = loops[k % len(loops):] + loops[:k % len(loops)]
                for loop in order:
                    if runs[loop] and ({"skipped", "not_implemented"} & runs[loop][-1].keys()):
                        continue  # the answer will not change on a second try
                    run = run_pair(name, loop, n, args.timeout)
                    runs[loop].append(run)
                    _progress(f"{name} [{k + 1}/{repeat}] {loop}: {report.describe_run(spec, run)}")
        results[name] = {"n": n, "skipped": reason,
                         "loops": {loop: {"runs": runs[loop], "best": best_run(spec, runs[loop]),
                                          "cpu": pooled_cpu(spec, runs[loop])}
                                   for loop in loops}}
    return results


def _progress(line):
    print("  " + line, file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    verdicts = probe_loops(args.loops, args.timeout)
    loops = [name for name in args.loops if verdicts[name]["ok"]]
    report.print_header(args, verdicts)
    if not loops:
        print("no loop is usable; nothing to run", file=sys.stderr)
        return 1
    results = run_all(args, loops)
    summary = report.summarize(results, loops)
    report.print_tables(results, summary, loops)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": report.environment(), "preset": args.preset, "repeat": args.repeat,
                       "loops": verdicts, "results": results, "summary": summary}, f, indent=2)
        print(f"\nresults saved to {args.json}")
    status = 0
    unusable = [loop for loop in args.require if loop in args.loops and not verdicts[loop]["ok"]]
    if unusable:
        for loop in unusable:
            print(f"\nrequired loop {loop} is not usable: {verdicts[loop]['reason']}", file=sys.stderr)
        status = 1
    failed = sum("error" in run for result in results.values()
                 for pair in result["loops"].values() for run in pair["runs"])
    if failed:
        print(f"\n{failed} run(s) failed; see the errors above", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
