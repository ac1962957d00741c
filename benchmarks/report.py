"""Ratios, targets and the tables that benchmarks.run prints."""
import os
import platform
import sys

from benchmarks.workloads import REGISTRY

CANDIDATE = "fastloop"


def environment():
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
    }


def print_header(args, verdicts):
    env = environment()
    print(f"Python {env['python']} ({env['implementation']}, {env['executable']}) "
          f"on {env['platform']}, {env['cpus']} CPUs")
    print(f"sizes: {args.preset}; best of {args.repeat} runs, each in a fresh process")
    for name, verdict in verdicts.items():
        if verdict["ok"]:
            print(f"  {name:9} {verdict['version']}")
        else:
            print(f"  {name:9} NOT AVAILABLE, column skipped: {verdict['reason']}")
    sys.stdout.flush()


def describe_run(spec, run):
    if "error" in run:
        return "ERROR: " + run["error"]
    if "skipped" in run:
        return "skipped: " + run["skipped"]
    if "not_implemented" in run:
        return "not implemented: " + run["not_implemented"]
    if spec.kind == "memory":
        return f"{run['bytes_per_op']:.0f} {spec.unit}"
    if spec.kind == "net":
        return (f"{_rate(run['ops_per_sec'])} {spec.unit}/s, server CPU per request "
                f"{_us(run['user_cpu_per_op'])} user + {_us(run['sys_cpu_per_op'])} sys; "
                f"busy: server {run['server_busy']:.0%}, {run['client']} client {run['client_busy']:.0%}")
    return f"{_rate(run['ops_per_sec'])} {spec.unit}/s"


def _status(runs):
    """Why a (workload, loop) pair has no number: "n/i", "skipped", "ERROR" or None."""
    if any("not_implemented" in r for r in runs):
        return "n/i"
    if runs and all("skipped" in r for r in runs):
        return "skipped"
    return "ERROR"


# -- numbers ----------------------------------------------------------------

def _score(spec, best):
    if best is None:
        return None
    return best["bytes_per_op"] if spec.kind == "memory" else best["ops_per_sec"]


def _ratios(scores, loops):
    mine = scores.get(CANDIDATE)
    return {f"{CANDIDATE}/{other}": (mine / scores[other] if mine and scores.get(other) else None)
            for other in loops if other != CANDIDATE}


def summarize(results, loops):
    """Per workload: fastloop's ratio to every other loop, and its targets' verdicts.

    "net" workloads have two: requests/s (higher is better) and, under "cpu",
    the server's user CPU seconds per request (lower is better)."""
    summary = {}
    for name, result in results.items():
        spec = REGISTRY[name]
        pairs = result["loops"]
        status = {loop: None if pair["best"] else _status(pair["runs"]) for loop, pair in pairs.items()}
        scores = {loop: _score(spec, pair["best"]) for loop, pair in pairs.items()}
        ratios = _ratios(scores, loops)
        summary[name] = {"scores": scores, "ratios": ratios, "status": status,
                         "target": _verdict(spec, result, status, ratios.get(f"{CANDIDATE}/{spec.baseline}"),
                                            loops, spec.target, spec.kind == "memory")}
        if spec.kind == "net":
            user = {loop: pair["cpu"]["user_cpu_per_op"] if pair["cpu"] else None
                    for loop, pair in pairs.items()}
            sys_ = {loop: pair["cpu"]["sys_cpu_per_op"] if pair["cpu"] else None
                    for loop, pair in pairs.items()}
            cpu_ratios = _ratios(user, loops)
            summary[name]["cpu"] = {
                "user": user, "sys": sys_, "ratios": cpu_ratios,
                "target": _verdict(spec, result, status, cpu_ratios.get(f"{CANDIDATE}/{spec.baseline}"),
                                   loops, spec.cpu_target, True)}
    return summary


def _verdict(spec, result, status, ratio, loops, target, lower_is_better):
    if target is None:
        return {"want": "none", "ratio": ratio, "met": None, "why": "no target"}
    verdict = {"want": f"{'<=' if lower_is_better else '>='} {target:.2f}x {spec.baseline}",
               "ratio": ratio, "met": None}
    if result["skipped"]:
        verdict["why"] = result["skipped"]
    elif CANDIDATE not in loops or spec.baseline not in loops:
        missing = CANDIDATE if CANDIDATE not in loops else spec.baseline
        verdict["why"] = f"{missing} not run"
    elif ratio is None:
        why = {"n/i": "not implemented", "skipped": "skipped"}
        missing = [f"{loop} {why.get(status[loop], 'failed')}"
                   for loop in (CANDIDATE, spec.baseline) if status.get(loop)]
        verdict["why"] = ", ".join(missing) or "a run failed"
    else:
        verdict["met"] = ratio <= target if lower_is_better else ratio >= target
    return verdict


# -- tables -----------------------------------------------------------------

def print_tables(results, summary, loops):
    speed = [n for n in results if REGISTRY[n].kind == "speed"]
    net = [n for n in results if REGISTRY[n].kind == "net"]
    memory = [n for n in results if REGISTRY[n].kind == "memory"]
    ratio_keys = []
    if CANDIDATE in loops:
        ratio_keys = [f"{CANDIDATE}/{other}" for other in loops if other != CANDIDATE]
    if speed:
        print("\nThroughput (operations per second, higher is better)")
        _print_kind(speed, results, summary, loops, ratio_keys, _rate)
    if net:
        print("\nEcho servers: requests per second, seen by the load client (higher is better)")
        _print_kind(net, results, summary, loops, ratio_keys, _rate)
        print("\nEcho servers: the server process's CPU time per request, user + sys, over all runs "
              "(lower is better; ratios and target on user)")
        _print_kind(net, results, summary, loops, ratio_keys, None, cpu=True)
        _print_net_notes(net, results)
    if memory:
        print("\nMemory (lower is better)")
        _print_kind(memory, results, summary, loops, ratio_keys, lambda b: f"{b:.0f} B")
    _print_targets(summary)
    _print_not_implemented(results)
    _print_errors(results)


def _print_kind(names, results, summary, loops, ratio_keys, fmt, cpu=False):
    headers = ["workload", "N", "unit"] + loops + ratio_keys + ["target"]
    rows, notes = [], []
    for name in names:
        spec, result, s = REGISTRY[name], results[name], summary[name]
        part = s["cpu"] if cpu else s
        unit = "us/request" if cpu else spec.unit
        if result["skipped"]:
            cells = ["-"] * (len(loops) + len(ratio_keys))
            notes.append(f"{name}: skipped, {result['skipped']}")
        else:
            if cpu:
                cells = [f"{_us(part['user'][loop])}+{_us(part['sys'][loop])}"
                         if part["user"][loop] is not None else s["status"][loop] for loop in loops]
            else:
                cells = [fmt(part["scores"][loop]) if part["scores"][loop] is not None
                         else s["status"][loop] for loop in loops]
            cells += [_ratio(part["ratios"][key]) for key in ratio_keys]
        rows.append([name, f"{result['n']:,}", unit] + cells + [part["target"]["want"]])
    _print_table(headers, rows)
    for note in notes:
        print("  " + note)


def _print_net_notes(names, results):
    """Which load client ran, and any run where it may have been the bottleneck."""
    kinds, busy, early = set(), [], []
    for name in names:
        for loop, pair in results[name]["loops"].items():
            if pair["best"]:
                kinds.add(pair["best"]["client"])
                if pair["best"]["client_busy"] > 0.9:
                    busy.append(f"{name} on {loop} ({pair['best']['client_busy']:.0%})")
                if pair["best"].get("stopped_early"):
                    early.append(f"{name} on {loop} ({pair['best']['ops']:,})")
    print("  n/i: the loop does not implement a method the style needs. The user/sys split comes")
    print("  from the kernel's per-tick sampling on most kernels (the sum is exact); --full or a higher")
    print("  --repeat steadies it.")
    if kinds:
        print(f"  load client: {', '.join(sorted(kinds))}; 10 connections; CPUs: {os.cpu_count()}")
    if "python-epoll" in kinds:
        print("  (no C compiler: the Python client ran, and may limit requests/s)")
    if busy:
        print("  load client busy > 90%, it may have limited requests/s: " + "; ".join(busy))
    if early:
        print("  stopped at the time bound before N requests (slow or busy machine): " + "; ".join(early))


def _print_not_implemented(results):
    """Pairs that measured nothing without failing: a missing method, or a machine limit."""
    for key, title in (("not_implemented", "Not implemented"), ("skipped", "Skipped on this machine")):
        seen = {}
        for name, result in results.items():
            for loop, pair in result["loops"].items():
                message = next((run[key] for run in pair["runs"] if key in run), None)
                if message is not None:
                    seen.setdefault((loop, message), []).append(name)
        if seen:
            print(f"\n{title} (reported, not a failure)")
            for (loop, message), names in seen.items():
                what = names[0] if len(names) == 1 else f"{len(names)} workloads"
                print(f"  {loop}, {what}: {message}")


def _print_targets(summary):
    targets = []
    for name, s in summary.items():
        if s["target"].get("why") != "no target":
            targets.append((name, s["target"]))
        if "cpu" in s:
            targets.append((f"{name} user CPU", s["cpu"]["target"]))
    if not targets:
        return
    if {t.get("why") for _, t in targets} == {f"{CANDIDATE} not run"}:
        print(f"\nTargets for {CANDIDATE}: none judged, {CANDIDATE} was not run")
        return
    print(f"\nTargets for {CANDIDATE}")
    met = judged = 0
    rows = []
    for name, t in targets:
        if t["met"] is None:
            status = f"not judged ({t['why']})"
        else:
            judged += 1
            met += t["met"]
            status = "met" if t["met"] else "MISSED"
        rows.append([name, t["want"], _ratio(t["ratio"]), status])
    _print_table(["workload", "target", "got", "status"], rows)
    print(f"targets met: {met} of {judged} judged ({len(targets)} in all)")


def _print_errors(results):
    errors = [(name, loop, run["error"])
              for name, result in results.items()
              for loop, pair in result["loops"].items()
              for run in pair["runs"] if "error" in run]
    if errors:
        print("\nFailed runs")
        for name, loop, message in errors:
            print(f"  {name} on {loop}: {message}")


def _print_table(headers, rows):
    widths = [max(len(str(row[i])) for row in [headers] + rows) for i in range(len(headers))]
    for row in [headers] + rows:
        # The first column is a name: left-aligned; the rest are numbers.
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cells).rstrip())


def _rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.1f}k"


def _us(seconds):
    return f"{seconds * 1e6:.1f}"


def _ratio(r):
    return "-" if r is None else f"{r:.2f}x"
