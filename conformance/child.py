"""Run one test.test_asyncio module in this process; run.py starts it.

    python conformance/child.py --loop fastloop --module test_tasks \
        --out results.jsonl [--skip-file done.txt] [--only ID_PREFIX ...]

Writes one JSON object per line to --out, flushed as it goes, so that the
parent can tell what ran even if this process crashes or hangs:

    {"event": "plan", "ids": [...]}        every test that will run
    {"event": "start", "id": ID}           before a test runs
    {"event": "result", "id": ID, "outcome": "pass|fail|error|skip",
     "detail": "..."}                      after it ran
    {"event": "done"}                      the module finished

Test ids are unittest ids without the "test.test_asyncio." prefix:
"test_tasks.CTask_CFuture_Tests.test_cancel".
"""

import argparse
import faulthandler
import importlib
import json
import os
import sys
import traceback
import types
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import binding  # noqa: E402
import exclusions  # noqa: E402

PREFIX = 'test.test_asyncio.'


def make_impl(loop):
    """The implementation under test; None for the unbound baseline."""
    import asyncio
    from asyncio import futures, tasks

    if loop == 'asyncio':
        return None
    if loop == 'asyncio-bound':
        # Every binding applied, with asyncio's own classes: proves the
        # binding itself changes no outcome.
        new_event_loop = loop_class = asyncio.SelectorEventLoop
        policy_class = None
        Task = tasks._CTask
        Future = futures._CFuture
    else:
        import fastloop
        new_event_loop = fastloop.new_event_loop
        loop_class = fastloop.Loop
        with warnings.catch_warnings():
            # 3.14+ deprecates policies (fastloop warns as asyncio does);
            # 3.16+ has none: the fallback below binds asyncio's then.
            warnings.simplefilter('ignore', DeprecationWarning)
            policy_class = getattr(fastloop, 'EventLoopPolicy', None)
        Task = getattr(fastloop, 'Task', None)
        Future = getattr(fastloop, 'Future', None)
    if policy_class is None:
        # 3.14+ deprecates asyncio.DefaultEventLoopPolicy (and 3.16 drops
        # it): its private name, where there is one.
        from asyncio import unix_events
        base = getattr(unix_events, '_DefaultEventLoopPolicy', None)
        if base is None:    # through 3.13
            base = asyncio.DefaultEventLoopPolicy
        policy_class = type('BoundPolicy', (base,),
                            {'_loop_factory': staticmethod(new_event_loop)})
    return types.SimpleNamespace(new_event_loop=new_event_loop,
                                 loop_class=loop_class,
                                 policy_class=policy_class,
                                 Task=Task, Future=Future)


def loop_class_name():
    """The class of the loops the tests get from asyncio.new_event_loop()."""
    import asyncio
    loop = asyncio.new_event_loop()
    loop.close()
    return type(loop).__module__ + '.' + type(loop).__qualname__


def short_id(test_id):
    return test_id[len(PREFIX):] if test_id.startswith(PREFIX) else test_id


def test_id_of(test):
    if isinstance(test, unittest.case._SubTest):
        test = test.test_case
    # setUpClass/tearDownModule errors come as _ErrorHolder objects whose
    # id is like "setUpClass (test.test_asyncio.test_x.Class)".
    return short_id(test.id()).replace('(' + PREFIX, '(')


class Recorder(unittest.TestResult):
    """A TestResult that writes one outcome per test id to a stream."""

    # Outcomes get worse in this order; a test keeps its worst.
    RANK = {'pass': 0, 'skip': 1, 'fail': 2, 'error': 3}

    def __init__(self, out, test_timeout):
        super().__init__()
        self.out = out
        self.test_timeout = test_timeout
        self.current = {}   # id -> [outcome, detail] for running tests
        self.pid = os.getpid()

    def emit(self, **event):
        if os.getpid() != self.pid:
            # A test forked and its child fell through into the runner:
            # it must not run the rest of the suite a second time.
            os._exit(70)
        self.out.write(json.dumps(event) + '\n')
        self.out.flush()

    def note(self, test, outcome, detail=''):
        tid = test_id_of(test)
        if tid not in self.current:
            # An error outside any test (class or module fixture).
            self.emit(event='result', id=tid, outcome=outcome, detail=detail)
            return
        if self.RANK[outcome] >= self.RANK[self.current[tid][0]]:
            self.current[tid] = [outcome, detail]

    def startTest(self, test):
        super().startTest(test)
        tid = test_id_of(test)
        self.current[tid] = ['pass', '']
        self.emit(event='start', id=tid)
        if self.test_timeout:
            # A hung test: dump every thread's stack and exit; the parent
            # records the test as hung and restarts after it.
            faulthandler.dump_traceback_later(self.test_timeout, exit=True)

    def stopTest(self, test):
        if self.test_timeout:
            faulthandler.cancel_dump_traceback_later()
        tid = test_id_of(test)
        # 3.12.1 skips a test of a skipped class without startTest(): note()
        # has written its result already.
        if tid in self.current:
            outcome, detail = self.current.pop(tid)
            self.emit(event='result', id=tid, outcome=outcome, detail=detail)
        super().stopTest(test)

    def format_err(self, err):
        return ''.join(traceback.format_exception(*err))[-4000:]

    def addError(self, test, err):
        self.note(test, 'error', self.format_err(err))

    def addFailure(self, test, err):
        self.note(test, 'fail', self.format_err(err))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self.note(test, 'fail' if failed else 'error',
                      str(subtest) + '\n' + self.format_err(err))

    def addSkip(self, test, reason):
        self.note(test, 'skip', reason)

    def addExpectedFailure(self, test, err):
        pass    # the test documents a known limitation: it behaves

    def addUnexpectedSuccess(self, test):
        self.note(test, 'fail', 'unexpected success')


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--loop', required=True)
    ap.add_argument('--module', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--skip-file')
    ap.add_argument('--only', nargs='*', default=[])
    ap.add_argument('--test-timeout', type=float, default=0)
    args = ap.parse_args()

    faulthandler.enable()
    out = open(args.out, 'a')
    skip = set()
    if args.skip_file:
        with open(args.skip_file) as f:
            skip = set(f.read().splitlines())

    impl = make_impl(args.loop)
    if impl is not None:
        binding.install_policy(impl)
    mod = importlib.import_module(PREFIX + args.module)
    if impl is not None:
        binding.bind_module(mod, impl)
    excluded = exclusions.EXCLUDED if args.loop == 'fastloop' else {}

    recorder = Recorder(out, args.test_timeout)
    suite = unittest.TestSuite()
    plan = []
    for test in iter_tests(unittest.defaultTestLoader.loadTestsFromModule(mod)):
        tid = test_id_of(test)
        if args.only and not any(tid == p or tid.startswith(p + '.')
                                 for p in args.only):
            continue
        plan.append(tid)
        if tid not in skip and tid not in excluded:
            suite.addTest(test)
    recorder.emit(event='plan', ids=plan, loop_class=loop_class_name())
    for tid in plan:
        if tid in excluded and tid not in skip:
            recorder.emit(event='result', id=tid, outcome='skip',
                          detail='excluded: ' + excluded[tid])
    suite.run(recorder)
    recorder.emit(event='done')
    out.close()
    # Skip interpreter teardown: a crash there is no test's fault, and the
    # results are already written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
