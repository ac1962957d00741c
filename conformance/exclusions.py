"""Tests excluded from fastloop's conformance run, by id, with the reason.

Only tests of asyncio's private internals belong here: tests that reach
into BaseEventLoop/selector internals (_run_once, _selector, _ready,
_scheduled, _process_events, ...) that a loop not derived
from BaseEventLoop does not have.  A test that fails because fastloop
behaves differently from asyncio through the public API is a fastloop bug:
it goes to known_failures/<pyver>.txt, never here.

Ids are "module.Class.test" as printed by run.py.  Excluded tests count as
skipped.  They apply to --loop fastloop only.  None of the default modules
(issue 3) needs one; these are all in the --all modules.
"""
import sys

_EVENTS = 'test_events.FastloopEventLoopTests.'
_WATCHER = 'test_subprocess.GenericWatcherTests.'
_SUBPROCESS = 'test_subprocess.'

EXCLUDED = {
    _WATCHER + 'test_create_subprocess_fails_with_inactive_watcher':
        'installs a mock asyncio child watcher and expects the '
        'unix_events loop to consult it; fastloop watches its children '
        'with pidfds and never uses child watchers (by design: issue 5)',
    _EVENTS + 'test_timeout_rounding':
        'wraps loop._run_once and reads loop._clock_resolution and '
        'loop._selector to count BaseEventLoop iterations',
    _EVENTS + 'test_prompt_cancellation':
        'ends with loop._stop_serving(sock), a BaseSelectorEventLoop '
        'internal',
    _EVENTS + 'test_create_server_multiple_hosts_ipv4':
        'mocks loop._start_serving/_stop_serving and the socket module of '
        'BaseEventLoop.create_server',
    _EVENTS + 'test_create_server_multiple_hosts_ipv6':
        'mocks loop._start_serving/_stop_serving and the socket module of '
        'BaseEventLoop.create_server',
    # 3.14+: _UnixSelectorEventLoop keeps its child watcher in loop._watcher
    # (a _PidfdChildWatcher or _ThreadedChildWatcher); fastloop watches its
    # children with pidfds in C and has neither (by design: issue 5).
    _SUBPROCESS + 'SubprocessPidfdWatcherTests.test_watcher_implementation':
        "asserts the class of loop._watcher, _UnixSelectorEventLoop's "
        'private child watcher',
    _SUBPROCESS + 'SubprocessThreadedWatcherTests.test_watcher_implementation':
        "asserts the class of loop._watcher, _UnixSelectorEventLoop's "
        'private child watcher',
    _SUBPROCESS + 'SubprocessThreadedWatcherTests.'
                  'test_pid_not_reaped_before_exit_published':
        "joins the thread of loop._watcher._threads[pid], the private "
        "watcher thread of _UnixSelectorEventLoop's _ThreadedChildWatcher",
    'test_ssl.TestSSL.test_remote_shutdown_receives_trailing_data_on_slow_socket':
        "reads the raw transport's _read_ready_cb and replaces its _sock, "
        "private attributes of asyncio's _SelectorSocketTransport, to force "
        "its delayed-write path (gh-115514); fastloop's transport has "
        "neither, and the AttributeError in resume_writing() leaves the "
        "test waiting forever",
}

if sys.version_info[:2] == (3, 12):
    EXCLUDED[_WATCHER + 'test_create_subprocess_with_pidfd'] = (
        "expects policy.get_event_loop() to raise, which 3.12's policy does "
        "only after the excluded test above ran first (it fails alone on "
        "asyncio's own loop too)")
