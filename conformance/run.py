"""Run CPython's test.test_asyncio against fastloop and report the score.

    python conformance/run.py                  default modules, fastloop
    python conformance/run.py --all            also the network modules
    python conformance/run.py test_locks test_tasks.CTask_CFuture_Tests
    python conformance/run.py --loop asyncio   baseline: asyncio, unbound
    python conformance/run.py --update-known   rewrite the known failures
    python conformance/run.py --json out.json  results for the README

Runs on the interpreter that runs it.  Each module runs in its own child
process (conformance/child.py).  If a child crashes or a test hangs, the
test that was running is recorded as an error and a new child carries on
after it.  Exit status: 0 if every failing test is a known failure
(known_failures/<major.minor>.txt), 1 otherwise.  See README.md.
"""

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYVER = '%d.%d' % sys.version_info[:2]

# Issue 3: the Task/Future and coroutine-level modules.
DEFAULT_MODULES = [
    'test_tasks', 'test_futures', 'test_futures2', 'test_eager_task_factory',
    'test_taskgroups', 'test_timeouts', 'test_waitfor', 'test_locks',
    'test_queues', 'test_pep492', 'test_context', 'test_runners',
    # 3.14+: the call graph, `python -m asyncio ps/pstree`'s formatting,
    # all_tasks()/current_task() across threads (on the GIL build too).
    'test_graph', 'test_tools', 'test_free_threading',
]

# Network I/O, subprocesses, signals, TLS: they land in later issues.
LATER_MODULES = [
    'test_events', 'test_streams', 'test_server', 'test_sock_lowlevel',
    'test_sendfile', 'test_buffered_proto', 'test_subprocess',
    'test_threads', 'test_ssl', 'test_sslproto', 'test_staggered',
    'test_server_context',      # 3.15+
]

# How many times a module's child may die before the rest of it is given up.
MAX_RESTARTS = 25


def module_exists(name):
    pkg = importlib.util.find_spec('test.test_asyncio')
    return os.path.exists(
        os.path.join(os.path.dirname(pkg.origin), name + '.py'))


def describe_exit(rc):
    if rc is not None and rc < 0:
        try:
            return 'killed by ' + signal.Signals(-rc).name
        except ValueError:
            return 'killed by signal %d' % -rc
    return 'exit status %s' % rc


def log_tail(path, lines=40):
    with open(path, errors='replace') as f:
        return [ln.rstrip() for ln in f.readlines()[-lines:] if ln.strip()]


class ModuleRun:
    """Runs one module, restarting the child after a crash or a hang."""

    def __init__(self, module, only, args, workdir, logdir):
        self.module = module
        self.only = only
        self.args = args
        self.out = os.path.join(workdir, module + '.jsonl')
        self.log = os.path.join(workdir, module + '.log')
        self.skip_file = os.path.join(workdir, module + '.skip')
        # Where the log will be once the run is over (see main()).
        self.final_log = os.path.join(logdir, module + '.log')
        self.results = {}       # id -> (outcome, detail)
        self.plan = None
        self.loop_class = None
        self.restarts = 0
        self.status = 'ok'
        self.seconds = 0.0

    def child_cmd(self):
        cmd = [sys.executable, os.path.join(HERE, 'child.py'),
               '--loop', self.args.loop, '--module', self.module,
               '--out', self.out, '--skip-file', self.skip_file,
               '--test-timeout', str(self.args.test_timeout)]
        if self.only:
            cmd += ['--only'] + self.only
        return cmd

    def read_events(self):
        """Update results from the child's output; return (done, running)."""
        done = False
        running = None
        with open(self.out) as f:
            for line in f:
                if not line.endswith('\n'):
                    break       # cut short by a crash
                ev = json.loads(line)
                if ev['event'] == 'plan':
                    self.plan = ev['ids']
                    self.loop_class = ev['loop_class']
                elif ev['event'] == 'start':
                    running = ev['id']
                elif ev['event'] == 'result':
                    self.results.setdefault(ev['id'],
                                            (ev['outcome'], ev['detail']))
                    if ev['id'] == running:
                        running = None
                elif ev['event'] == 'done':
                    done = True
        return done, running

    def give_up_rest(self, why):
        for tid in self.plan or [self.module + ' (module)']:
            self.results.setdefault(tid, ('error', why))

    def run(self):
        start = time.monotonic()
        deadline = start + self.args.timeout
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in [ROOT, env.get('PYTHONPATH')] if p)
        for path in (self.out, self.skip_file):
            open(path, 'w').close()
        with open(self.log, 'w') as log:
            while True:
                with open(self.skip_file, 'w') as f:
                    f.write('\n'.join(self.results))
                proc = subprocess.Popen(self.child_cmd(), stdout=log,
                                        stderr=subprocess.STDOUT, env=env,
                                        cwd=ROOT)
                try:
                    rc = proc.wait(max(1.0, deadline - time.monotonic()))
                    timed_out = False
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
                    timed_out = True
                done, running = self.read_events()
                if done:
                    break
                if timed_out:
                    why = 'module timed out after %ss' % self.args.timeout
                    if running:
                        self.results[running] = ('error', why)
                    self.give_up_rest('not run: ' + why)
                    self.status = 'timeout'
                    break
                tail = log_tail(self.log)
                if any(ln.startswith('Timeout (') for ln in tail):
                    why = 'hung: no result after %ss (--test-timeout)' % (
                        self.args.test_timeout)
                elif rc < 0 or not tail:
                    why = 'child process died (%s)' % describe_exit(rc)
                else:
                    why = 'child process died (%s): %s' % (
                        describe_exit(rc), tail[-1])
                why += '; see ' + os.path.relpath(self.final_log)
                if running is None:
                    # Died outside any test (import, a fixture): give up.
                    self.give_up_rest(why)
                    self.status = 'crash'
                    break
                self.results[running] = ('error', why)
                self.restarts += 1
                self.status = 'restarted x%d' % self.restarts
                if self.restarts >= MAX_RESTARTS:
                    self.give_up_rest('not run: too many crashes')
                    break
        self.seconds = time.monotonic() - start
        return self


def module_of(tid):
    """'test_x.C.test_y', 'test_x (module)', 'setUpClass (test_x.C)'
    -> 'test_x'"""
    if '(' in tid and not tid.startswith('test_'):
        tid = tid[tid.index('(') + 1:]
    return re.split(r'[. )]', tid)[0]


def load_known(path):
    """known failures file -> {test id: reason}"""
    known = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                tid, _, reason = line.partition('#')
                if tid.strip():
                    known[tid.strip()] = reason.strip()
    return known


EXC_LINE = re.compile(r'^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b')


def first_line(detail):
    """The exception line of a traceback: a short reason for a failure."""
    lines = [ln.strip() for ln in detail.strip().splitlines() if ln.strip()]
    exc_lines = [ln for ln in lines if EXC_LINE.match(ln)]
    line = exc_lines[-1] if exc_lines else lines[-1] if lines else 'failed'
    return line[:150]


def write_known(path, known, loop):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('# Known %s failures of test.test_asyncio on CPython %s.\n'
                '# One test id per line; the comment says why it fails.\n'
                '# Written by: python conformance/run.py --update-known\n'
                '# (which keeps the reasons of entries that still fail).\n\n'
                % (loop, PYVER))
        for tid in sorted(known):
            reason = known[tid].split('; see ')[0]    # drop the log path
            f.write('%s  # %s\n' % (tid, reason))


def count(results):
    c = {'passed': 0, 'failed': 0, 'errors': 0, 'skipped': 0}
    key = {'pass': 'passed', 'fail': 'failed', 'error': 'errors',
           'skip': 'skipped'}
    for outcome, _ in results.values():
        c[key[outcome]] += 1
    return c


def parse_args():
    ap = argparse.ArgumentParser(
        description='Run test.test_asyncio against fastloop.')
    ap.add_argument('tests', nargs='*',
                    help='modules (test_locks), classes '
                         '(test_locks.LockTests) or tests '
                         '(test_locks.LockTests.test_repr); '
                         'default: the default module set')
    ap.add_argument('--loop', default='fastloop',
                    choices=['fastloop', 'asyncio', 'asyncio-bound'],
                    help='fastloop (default); asyncio: the unbound '
                         'baseline; asyncio-bound: every binding applied '
                         "with asyncio's own loop and C Task/Future")
    ap.add_argument('--all', action='store_true',
                    help='also run the modules of later issues '
                         '(network, subprocess, TLS)')
    ap.add_argument('-j', '--jobs', type=int, default=2)
    ap.add_argument('--timeout', type=float, default=300,
                    help='per module, seconds (default 300)')
    ap.add_argument('--test-timeout', type=float, default=60,
                    help='per test, seconds (default 60)')
    ap.add_argument('--json', metavar='FILE', help='write results as JSON')
    ap.add_argument('--known', metavar='FILE',
                    help='known failures file (default: '
                         'known_failures/<pyver>.txt for fastloop)')
    ap.add_argument('--update-known', action='store_true',
                    help='rewrite the known failures of the modules run '
                         'from this run')
    ap.add_argument('-v', '--verbose', action='store_true',
                    help='print the traceback of each regression')
    return ap.parse_args()


def select(args):
    """[(module, [id prefixes])] to run, in order."""
    if not args.tests:
        mods = DEFAULT_MODULES + (LATER_MODULES if args.all else [])
        return [(m, []) for m in mods]
    chosen = {}     # module -> id prefixes, or None for all of it
    for t in args.tests:
        mod, _, rest = t.partition('.')
        if not rest:
            chosen[mod] = None
        elif chosen.get(mod, []) is not None:
            chosen[mod] = chosen.get(mod, []) + [t]
    return [(m, p or []) for m, p in chosen.items()]


def main():
    args = parse_args()
    if args.known:
        known_path = args.known
    elif args.loop == 'fastloop':
        known_path = os.path.join(HERE, 'known_failures', PYVER + '.txt')
    else:
        known_path = os.path.join(HERE, 'known_failures',
                                  '%s-%s.txt' % (args.loop, PYVER))
    known = load_known(known_path)
    # Children write into a private directory, which replaces
    # logs/<loop>-<pyver>/ at the end: two runs at once do not mix.
    logdir = os.path.join(HERE, 'logs', '%s-%s' % (args.loop, PYVER))
    os.makedirs(os.path.dirname(logdir), exist_ok=True)
    workdir = tempfile.mkdtemp(dir=os.path.dirname(logdir),
                               prefix=os.path.basename(logdir) + '.')

    todo = []
    missing = []
    for mod, only in select(args):
        if module_exists(mod):
            todo.append(ModuleRun(mod, only, args, workdir, logdir))
        else:
            missing.append(mod)

    print('conformance: CPython %s, loop %s, %d modules, logs in %s'
          % (sys.version.split()[0], args.loop, len(todo),
             os.path.relpath(logdir)))
    if missing:
        print('not in this Python: ' + ', '.join(missing))
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for run in pool.map(ModuleRun.run, todo):
            pass
    runs = todo
    shutil.rmtree(logdir, ignore_errors=True)
    try:
        os.rename(workdir, logdir)
    except OSError:     # another run finished at the same moment
        print('logs kept in ' + os.path.relpath(workdir))
    loop_classes = sorted({run.loop_class for run in runs if run.loop_class})
    print('asyncio.new_event_loop() in the tests made: '
          + ', '.join(loop_classes))

    # Score.
    header = '%-26s %6s %6s %6s %6s %6s %6s %7s  %s' % (
        'module', 'passed', 'failed', 'errors', 'skip', 'known', 'new',
        'seconds', 'status')
    print()
    print(header)
    print('-' * len(header))
    total = {'passed': 0, 'failed': 0, 'errors': 0, 'skipped': 0}
    regressions = []
    fixed = []
    for run in runs:
        c = count(run.results)
        bad = [t for t, (o, _) in run.results.items()
               if o in ('fail', 'error')]
        new = [t for t in bad if t not in known]
        regressions += new
        fixed += [t for t, (o, _) in run.results.items()
                  if o == 'pass' and t in known]
        for k in total:
            total[k] += c[k]
        print('%-26s %6d %6d %6d %6d %6d %6d %7.1f  %s' % (
            run.module, c['passed'], c['failed'], c['errors'],
            c['skipped'], len(bad) - len(new), len(new), run.seconds,
            run.status))
    print('-' * len(header))

    details = {t: d for run in runs for t, (o, d) in run.results.items()
               if o in ('fail', 'error')}
    if regressions:
        print('\nregressions (failing, not in %s):'
              % os.path.relpath(known_path))
        shown = regressions if args.verbose else regressions[:40]
        for tid in shown:
            print('  %s  # %s' % (tid, first_line(details[tid])))
            if args.verbose:
                print('    ' + details[tid].replace('\n', '\n    '))
        if len(shown) < len(regressions):
            print('  ... and %d more (-v shows all, with tracebacks)'
                  % (len(regressions) - len(shown)))
    if fixed:
        print('\nunexpectedly passing (remove from %s):'
              % os.path.relpath(known_path))
        for tid in fixed:
            print('  ' + tid)

    if args.update_known:
        ran = {run.module for run in runs}
        kept = {t: r for t, r in known.items() if module_of(t) not in ran}
        for tid, detail in details.items():
            if tid.endswith(' (module)'):
                # The module could not run at all (build, import): that is
                # no test's known failure.
                print('not recorded: ' + tid)
                continue
            kept[tid] = known.get(tid) or first_line(detail)
        if kept or os.path.exists(known_path):
            write_known(known_path, kept, args.loop)
            print('\nwrote %s (%d entries)'
                  % (os.path.relpath(known_path), len(kept)))
        regressions = [t for t in regressions if t not in kept]

    if args.json:
        data = {
            'python': sys.version.split()[0],
            'loop': args.loop,
            'loop_classes': loop_classes,
            'modules': {run.module: dict(count(run.results),
                                         seconds=round(run.seconds, 1),
                                         status=run.status)
                        for run in runs},
            'total': total,
            'regressions': regressions,
            'unexpectedly_passing': fixed,
            'failures': {t: first_line(d) for t, d in sorted(details.items())},
        }
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=2)

    print('\nconformance: %d passed, %d failed, %d skipped' % (
        total['passed'], total['failed'] + total['errors'],
        total['skipped']))
    print('regressions: %d' % len(regressions))
    return 1 if regressions else 0


if __name__ == '__main__':
    sys.exit(main())
