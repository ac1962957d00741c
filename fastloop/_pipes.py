"""Pipes and subprocesses: the cold, once-per-pipe and once-per-child work.

The bytes move in C: a pipe transport is `_core.StreamTransport` in pipe
mode (src/stream.c), the same code that serves sockets; a read pipe's type
is `_core.ReadPipeTransport`, the same object with only the reading half. What asyncio already
does well once per call stays asyncio's own: connect_read_pipe,
connect_write_pipe, subprocess_exec and subprocess_shell are taken from
BaseEventLoop as functions (so every Python version keeps its own argument
checks and messages), and the subprocess transport is asyncio's
_UnixSubprocessTransport (subprocess.Popen, then our pipe transports).

What differs is how a child's exit is noticed: no SIGCHLD handler and no
child watcher. A pidfd (os.pidfd_open) watched by the loop tells us the
child exited (a C ev_io watcher on it: _core.ChildWatcher, src/process.c),
and it reaps exactly that pid without blocking (waitid on the pidfd), so
children spawned elsewhere (subprocess, os.fork) are never touched and a
loop in any thread works. Where pidfd_open is missing (Linux < 5.3), or the
loop cannot watch the pidfd, a thread blocks in os.waitpid(pid, 0) for the
child instead. Either way the protocol's process_exited() (and what it
schedules) runs in the context of the subprocess_exec() call, as with
asyncio's pidfd watcher (3.12+).
"""
import contextvars
import functools
import os
import stat
import threading

from asyncio import base_events, unix_events
from asyncio.log import logger

from . import _core

_Base = base_events.BaseEventLoop

_READ_PIPE = 1
_WRITE_PIPE = 2


def _check_pipe_mode(fd, kind):
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        # asyncio's two transports word it differently.
        if kind == _READ_PIPE:
            raise ValueError("Pipe transport is for pipes/sockets only.")
        raise ValueError("Pipe transport is only for pipes, sockets and "
                         "character devices")


class PipesMixin:
    """Loop methods for pipes and child processes."""

    connect_read_pipe = _Base.connect_read_pipe
    connect_write_pipe = _Base.connect_write_pipe
    subprocess_exec = _Base.subprocess_exec
    subprocess_shell = _Base.subprocess_shell
    _log_subprocess = _Base._log_subprocess

    # ---- the hooks asyncio's code above calls ----

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None,
                                  extra=None):
        return self._fl_pipe_transport(pipe, protocol, waiter, extra,
                                       _READ_PIPE)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None,
                                   extra=None):
        return self._fl_pipe_transport(pipe, protocol, waiter, extra,
                                       _WRITE_PIPE)

    def _fl_pipe_transport(self, pipe, protocol, waiter, extra, kind):
        self._check_closed()
        fd = pipe.fileno()
        _check_pipe_mode(fd, kind)
        os.set_blocking(fd, False)
        # A read pipe is its own type, a ReadTransport without the writing
        # half, as asyncio's; a write pipe is the stream transport's.
        cls = _core.ReadPipeTransport if kind == _READ_PIPE else _core.StreamTransport
        return cls(self, pipe, protocol, waiter,
                   dict(extra) if extra else None, None, pipe=kind)

    async def _make_subprocess_transport(self, protocol, args, shell,
                                         stdin, stdout, stderr, bufsize,
                                         extra=None, **kwargs):
        waiter = self.create_future()
        transp = unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs)
        self._fl_watch_child(transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    # ---- noticing a child's exit ----

    def _fl_watch_child(self, transp):
        pid = transp.get_pid()
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            # No pidfd (old kernel or libc, or out of fds): a thread waits
            # for this child.
            self._fl_wait_in_thread(transp)
            return
        try:
            watcher = _core.ChildWatcher(
                self, pidfd, pid,
                functools.partial(self._fl_child_exited, pidfd, transp),
                functools.partial(self._fl_child_watch_failed, pidfd, transp))
        except BaseException:
            os.close(pidfd)
            raise
        self._fl_children[pidfd] = watcher

    def _fl_wait_in_thread(self, transp):
        pid = transp.get_pid()
        threading.Thread(target=_wait_in_thread,
                         args=(self, pid, transp, contextvars.copy_context()),
                         name=f"fastloop-waitpid-{pid}",
                         daemon=True).start()

    def _fl_child_watch_failed(self, pidfd, transp):
        """The loop could not watch the pidfd (the ChildWatcher closed it
        unless it was not its own any more); the child is still running."""
        self._fl_children.pop(pidfd, None)
        self._fl_wait_in_thread(transp)

    @functools.cached_property
    def _fl_children(self):
        """pidfd -> the ChildWatcher of each child not yet reaped."""
        return {}

    def _fl_release_children(self):
        """At close: children still running are reaped by threads, so none
        is left a zombie (asyncio's threaded watcher does the same)."""
        children = self.__dict__.pop("_fl_children", None)
        for watcher in (children or {}).values():
            watcher.cancel()
            threading.Thread(target=_reap, args=(watcher.pid,),
                             name=f"fastloop-waitpid-{watcher.pid}",
                             daemon=True).start()

    def _fl_child_exited(self, pidfd, transp, returncode):
        """The ChildWatcher reaped the child (returncode None: Popen.poll()
        in transport.close() reaped it first and knows the code)."""
        self._fl_children.pop(pidfd, None)
        pid = transp.get_pid()
        if returncode is None:
            returncode = transp._proc.returncode
            if returncode is None:
                logger.warning("Unknown child process pid %d, will report "
                               "returncode 255", pid)
                returncode = 255
        if self._debug:
            logger.debug('process %s exited with returncode %s',
                         pid, returncode)
        transp._process_exited(returncode)


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _wait_in_thread(loop, pid, transp, context):
    try:
        _, status = os.waitpid(pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        returncode = transp._proc.returncode
        if returncode is None:
            returncode = 255
    try:
        loop.call_soon_threadsafe(transp._process_exited, returncode,
                                  context=context)
    except RuntimeError:
        pass    # the loop is closed: the child is reaped all the same
