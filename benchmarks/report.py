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
    if spec.kind == "memory":
        return f"{run['bytes_per_op']:.0f} {spec.unit}"
    return f"{_rate(run['ops_per_sec'])} {spec.unit}/s"


# -- numbers ----------------------------------------------------------------

def _score(spec, best):
    if best is None:
        return None
    return best["bytes_per_op"] if spec.kind == "memory" else best["ops_per_sec"]


def summarize(results, loops):
    """Per workload: fastloop's ratio to every other loop, and its target's verdict."""
    summary = {}
    for name, result in results.items():
        spec = REGISTRY[name]
        scores = {loop: _score(spec, pair["best"]) for loop, pair in result["loops"].items()}
        mine = scores.get(CANDIDATE)
        ratios = {f"{CANDIDATE}/{other}": (mine / scores[other] if mine and scores.get(other) else None)
                  for other in loops if other != CANDIDATE}
        summary[name] = {"scores": scores, "ratios": ratios,
                         "target": _verdict(spec, result, ratios.get(f"{CANDIDATE}/{spec.baseline}"), loops)}
    return summary


def _verdict(spec, result, ratio, loops):
    lower_is_better = spec.kind == "memory"
    verdict = {"want": f"{'<=' if lower_is_better else '>='} {spec.target:.2f}x {spec.baseline}",
               "ratio": ratio, "met": None}
    if result["skipped"]:
        verdict["why"] = result["skipped"]
    elif CANDIDATE not in loops or spec.baseline not in loops:
        missing = CANDIDATE if CANDIDATE not in loops else spec.baseline
        verdict["why"] = f"{missing} not run"
    elif ratio is None:
        verdict["why"] = "a run failed"
    else:
        verdict["met"] = ratio <= spec.target if lower_is_better else ratio >= spec.target
    return verdict


# -- tables -----------------------------------------------------------------

def print_tables(results, summary, loops):
    speed = [n for n in results if REGISTRY[n].kind == "speed"]
    memory = [n for n in results if REGISTRY[n].kind == "memory"]
    ratio_keys = []
    if CANDIDATE in loops:
        ratio_keys = [f"{CANDIDATE}/{other}" for other in loops if other != CANDIDATE]
    if speed:
        print("\nThroughput (operations per second, higher is better)")
        _print_kind(speed, results, summary, loops, ratio_keys, _rate)
    if memory:
        print("\nMemory (lower is better)")
        _print_kind(memory, results, summary, loops, ratio_keys, lambda b: f"{b:.0f} B")
    _print_targets(summary)
    _print_errors(results)


def _print_kind(names, results, summary, loops, ratio_keys, fmt):
    headers = ["workload", "N", "unit"] + loops + ratio_keys + ["target"]
    rows, notes = [], []
    for name in names:
        spec, result, s = REGISTRY[name], results[name], summary[name]
        if result["skipped"]:
            cells = ["-"] * (len(loops) + len(ratio_keys))
            notes.append(f"{name}: skipped, {result['skipped']}")
        else:
            cells = [fmt(s["scores"][loop]) if s["scores"][loop] is not None else "ERROR" for loop in loops]
            cells += [_ratio(s["ratios"][key]) for key in ratio_keys]
        rows.append([name, f"{result['n']:,}", spec.unit] + cells + [s["target"]["want"]])
    _print_table(headers, rows)
    for note in notes:
        print("  " + note)


def _print_targets(summary):
    reasons = {s["target"].get("why") for s in summary.values()}
    if reasons == {f"{CANDIDATE} not run"}:
        print(f"\nTargets for {CANDIDATE}: none judged, {CANDIDATE} was not run")
        return
    print(f"\nTargets for {CANDIDATE}")
    met = judged = 0
    rows = []
    for name, s in summary.items():
        t = s["target"]
        if t["met"] is None:
            status = f"not judged ({t['why']})"
        else:
            judged += 1
            met += t["met"]
            status = "met" if t["met"] else "MISSED"
        rows.append([name, t["want"], _ratio(t["ratio"]), status])
    _print_table(["workload", "target", "got", "status"], rows)
    print(f"targets met: {met} of {judged} judged ({len(summary)} in all)")


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


def _ratio(r):
    return "-" if r is None else f"{r:.2f}x"
