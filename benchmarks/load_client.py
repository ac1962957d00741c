"""The load client of the network benchmarks: build it, start it, read its reports.

The client is a separate process so that the server's CPU time is the
server's alone. It is benchmarks/echo_client.c, compiled on first use with
$CC, gcc or cc (cached in the temporary directory under a hash of its
source); without a C compiler, or with FASTLOOP_BENCH_CLIENT=python, it is
benchmarks/echo_client.py, an epoll client in Python that takes the same
arguments and prints the same JSON, but is slower and may then be the
bottleneck (the results say which client ran, and how busy it was).

The TLS load client is the same source built with -DECHO_TLS against
OpenSSL (libssl-dev on Debian; scripts/bench installs it). It has no Python
fallback: a Python client would run the very ssl module whose cost is being
measured on the server side.

ClientProcess reads the client's stdout through the event loop under test
(add_reader on the pipe), so the server keeps serving while it waits.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks.echo_server import wait_either

HERE = os.path.dirname(os.path.abspath(__file__))
C_SOURCE = os.path.join(HERE, "echo_client.c")
PY_CLIENT = os.path.join(HERE, "echo_client.py")


def _compiler():
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    return None


def build_c_client(tls=False):
    """Path of the compiled client, building it if needed; None without a compiler."""
    cc = _compiler()
    if cc is None:
        return None
    flags, libs = (["-DECHO_TLS"], ["-lssl", "-lcrypto"]) if tls else ([], [])
    with open(C_SOURCE, "rb") as f:
        digest = hashlib.sha1(f.read() + cc.encode() + repr(flags).encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"fastloop-bench-{os.getuid()}")
    binary = os.path.join(cache, f"echo_client{'-tls' if tls else ''}-{digest}")
    if os.path.exists(binary):
        return binary
    os.makedirs(cache, exist_ok=True)
    # Build under a private name, then rename: a concurrent run never sees
    # half a binary.
    partial = f"{binary}.{os.getpid()}.tmp"
    proc = subprocess.run([cc, "-O2", "-Wall", "-Wextra", *flags, "-o", partial, C_SOURCE, *libs],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        hint = " (the TLS client needs OpenSSL's headers: libssl-dev)" if tls else ""
        raise RuntimeError(f"{cc} could not build the load client{hint}:\n{proc.stderr}")
    os.replace(partial, binary)
    return binary


def client_command(tls=False):
    """(argv prefix, kind): kind is "c", "c-openssl" or "python-epoll"."""
    if tls:
        binary = build_c_client(tls=True)
        if binary is None:
            raise RuntimeError("the TLS load client needs a C compiler ($CC, gcc or cc)")
        return [binary], "c-openssl"
    if os.environ.get("FASTLOOP_BENCH_CLIENT") != "python":
        binary = build_c_client()
        if binary is not None:
            return [binary], "c"
    return [sys.executable, PY_CLIENT], "python-epoll"


class ClientProcess:
    """A running load client whose stdout lines (JSON objects) the loop collects."""

    def __init__(self, loop, args, tls=False):
        self.loop = loop
        prefix, self.kind = client_command(tls)
        # stderr to a file: the client may die with a long message while the
        # loop is not reading, and a full pipe would block it.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(prefix + [str(a) for a in args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._pending = b""
        self.lines = []
        self.eof = False
        self._changed = None
        loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def _on_readable(self):
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            *complete, self._pending = (self._pending + data).split(b"\n")
            self.lines.extend(json.loads(line) for line in complete if line.strip())
        else:
            self.eof = True
            self._stop_reading()
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def _stop_reading(self):
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self._fd)

    async def next_line(self, tracker, timeout):
        """The client's next JSON line, or its error if it exits without one."""
        while not self.lines:
            if self.eof:
                raise RuntimeError(self._exit_message())
            self._changed = self.loop.create_future()
            await wait_either(self._changed, tracker, timeout,
                              f"the load client said nothing for {timeout:g} s")
        return self.lines.pop(0)

    def finish_input(self):
        """Close the client's stdin: the idle client's signal to close its connections."""
        self.proc.stdin.close()

    def _exit_message(self):
        code = self.proc.wait(timeout=10)
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace").strip()
        return f"load client ({self.kind}) exited with status {code}" + (f": {err}" if err else "")

    def close(self):
        """Stop reading; end the client if it still runs; reap it."""
        self._stop_reading()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            if not f.closed:
                f.close()

    def check_exit(self):
        """After the last line: raise unless the client exited with status 0."""
        code = self.proc.wait(timeout=10)
        if code != 0:
            raise RuntimeError(self._exit_message())
