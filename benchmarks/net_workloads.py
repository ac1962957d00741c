"""The network workloads: echo servers under load, and idle connections held open.

    echo_<style>_<size>   style: protocol, buffered, streams, sock (see
                          echo_server.py); size: 1k, 10k, 100k (message bytes).
                          CONNS connections; N requests in all, or fewer if
                          the run reaches N / FLOOR_RATE seconds first (a bound
                          on the suite's length on a busy machine). Reports the
                          client's requests/s and the server process's own CPU
                          time per request, user and system.
    idle_conns            N connections held open on a Protocol echo server;
                          reports the server's resident memory per connection.
    tls_echo_<size>       the Protocol echo server over TLS (size: 1k, 64k),
                          CONNS connections from the C client built with
                          OpenSSL; the same figures as echo_*.
    tls_idle_conns        idle_conns over TLS: bytes per connection once its
                          handshake is done (N = 1,000).

The process running the workload is the server; the load client is another
process (load_client.py), so getrusage(RUSAGE_SELF) here is the server's CPU
alone. A loop whose network methods raise NotImplementedError makes the run
raise it, which the harness reports as "not implemented".

workloads.py registers everything in WORKLOADS; this module does not import
it, so that `python -m benchmarks.workloads` sees one registry.
"""
import asyncio
import gc
import os
import resource
import time

from benchmarks import echo_server
from benchmarks.load_client import ClientProcess

CONNS = 10
SIZES = {"1k": 1024, "10k": 10 * 1024, "100k": 100 * 1024}
# Requests per run (all connections together), sized so that fastloop's
# server runs about a second on an idle machine (asyncio's two to four). The
# kernel splits CPU time into user and system by sampling at each tick
# (4 ms at HZ=250), so a short run would leave the user figure, a tenth of
# the whole here, resting on a handful of samples.
REQUESTS = {"1k": 100_000, "10k": 60_000, "100k": 12_000}
# Requests/s below which a run stops early, at N / FLOOR_RATE seconds.
FLOOR_RATE = {"1k": 20_000, "10k": 15_000, "100k": 3_000}
IDLE_CONNS = 10_000
# TLS (group "tls"): message sizes, requests and floor rates as above, sized
# so that fastloop's server runs about a second (AES-GCM sets the pace at
# 64 KiB).
TLS_SIZES = {"1k": 1024, "64k": 64 * 1024}
TLS_REQUESTS = {"1k": 30_000, "64k": 4_000}
TLS_FLOOR_RATE = {"1k": 8_000, "64k": 800}
TLS_IDLE_CONNS = 1_000
# No run waits longer than this for the client or the server.
TIMEOUT = 120


def _cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Server:
    """An echo server of one style on a fresh listening socket (over TLS with
    tls=True), and its tracker."""

    def __init__(self, loop, style, tls=False):
        self.loop = loop
        self.tracker = echo_server.Tracker(loop)
        loop.set_exception_handler(self.tracker.exception_handler)
        self.sock = echo_server.listening_socket()
        self.port = self.sock.getsockname()[1]
        self.server = None
        try:
            self.server = loop.run_until_complete(
                echo_server.start(style, loop, self.sock, self.tracker,
                                  tls=echo_server.tls_server_context() if tls else None))
        except BaseException:
            self.sock.close()
            raise

    def close(self):
        if self.server is not None:
            self.server.close()
            try:
                self.loop.run_until_complete(asyncio.wait_for(self.server.wait_closed(), 10))
            except Exception:
                pass  # the run's own error, if any, is the one to report
        self.sock.close()


def _run(loop, coro):
    # A coroutine wrapped in a task by the loop under test.
    return loop.run_until_complete(coro)


def echo(style, size_name, tls=False):
    """The workload function for one style and message size (over TLS with
    tls=True). Its max_seconds argument overrides the time bound (the
    profilers run the server 50 times slower)."""
    msg_size = (TLS_SIZES if tls else SIZES)[size_name]
    floor_rate = (TLS_FLOOR_RATE if tls else FLOOR_RATE)[size_name]

    def run(loop, n, max_seconds=None):
        server = _Server(loop, style, tls)
        client = None
        try:
            max_ms = max(1, round(1000 * (max_seconds or n / floor_rate)))
            client = ClientProcess(loop, ["echo", "127.0.0.1", server.port, CONNS, msg_size, n, max_ms],
                                   tls=tls)
            # From here on the server serves; its CPU time is what we report.
            u0, s0 = _cpu()
            t0 = time.perf_counter()
            result = _run(loop, client.next_line(server.tracker, TIMEOUT))
            _run(loop, server.tracker.all_closed(10))
            wall = time.perf_counter() - t0
            u1, s1 = _cpu()
            client.check_exit()
        finally:
            if client is not None:
                client.close()
            server.close()
        requests, seconds = result["requests"], result["seconds"]
        if not 0 < requests <= n:
            raise AssertionError(f"the client made {requests} requests, asked for {n}")
        if server.tracker.accepted != CONNS:
            raise AssertionError(f"the server saw {server.tracker.accepted} connections, not {CONNS}")
        return {
            "ops": requests,
            "seconds": seconds,
            "user_cpu_per_op": (u1 - u0) / requests,
            "sys_cpu_per_op": (s1 - s0) / requests,
            # How busy each side was: a client near 100% may be the bottleneck.
            "server_busy": ((u1 - u0) + (s1 - s0)) / wall,
            "client_busy": (result["user"] + result["sys"]) / seconds,
            "client": client.kind,
            "message_bytes": msg_size,
            "connections": CONNS,
            "stopped_early": requests < n,
        }

    run.__name__ = f"{'tls_' if tls else ''}echo_{style}_{size_name}"
    return run


def _raise_fd_limit(needed):
    """Raise RLIMIT_NOFILE's soft limit to `needed`; return why not, or None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"RLIMIT_NOFILE hard limit is {hard}, {needed} needed (raise it with ulimit -Hn)"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        return f"cannot raise RLIMIT_NOFILE to {needed}: {exc}"
    return None


def idle(tls=False):
    """The idle-connections workload: plain, or over TLS (the memory is
    measured once every handshake is done)."""
    def run(loop, n):
        return _idle_conns(loop, n, tls)
    run.__name__ = "tls_idle_conns" if tls else "idle_conns"
    return run


def _idle_conns(loop, n, tls):
    # The server holds n sockets, the client another n (it raises its own limit).
    reason = _raise_fd_limit(n + 256)
    if reason:
        return {"skipped": reason}
    server = _Server(loop, "protocol", tls)
    client = None
    try:
        gc.collect()
        before = _rss_bytes()
        client = ClientProcess(loop, ["idle", "127.0.0.1", server.port, n], tls=tls)
        ready = _run(loop, client.next_line(server.tracker, TIMEOUT))
        if server.tracker.active != n:
            raise AssertionError(f"the server holds {server.tracker.active} connections, not {n}")
        gc.collect()
        after = _rss_bytes()
        client.finish_input()
        _run(loop, client.next_line(server.tracker, TIMEOUT))
        _run(loop, server.tracker.all_closed(30))
        client.check_exit()
    finally:
        if client is not None:
            client.close()
        server.close()
    return {"ops": n, "seconds": ready["seconds"], "bytes_per_op": (after - before) / n,
            "client": client.kind}


def workloads():
    """(name, function, options for workloads.workload) of every network workload."""
    found = []
    for size_name in SIZES:
        for style in echo_server.STYLES:
            n = REQUESTS[size_name]
            found.append((f"echo_{style}_{size_name}", echo(style, size_name), dict(
                n=n, quick_n=n // 5, full_n=n * 5, group="net",
                target=2.0 if style == "sock" else 1.0, cpu_target=0.7,
                kind="net", unit="requests",
                description=f"echo server ({style}), {size_name[:-1]} KiB messages, {CONNS} connections")))
    found.append(("idle_conns", idle(), dict(
        n=IDLE_CONNS, quick_n=1_000, full_n=IDLE_CONNS, group="net", target=None, repeat=1,
        kind="memory", unit="bytes/conn",
        description="server memory per connection, N idle connections on a Protocol echo server")))
    # Issue #12's targets: requests/s >= 1.2x uvloop and user CPU per request
    # <= 0.7x at 1 KiB; >= 1.0x at 64 KiB; idle memory not above uvloop's.
    for size_name, target, cpu_target in (("1k", 1.2, 0.7), ("64k", 1.0, None)):
        n = TLS_REQUESTS[size_name]
        found.append((f"tls_echo_{size_name}", echo("protocol", size_name, tls=True), dict(
            n=n, quick_n=n // 5, full_n=n * 5, group="tls", target=target, cpu_target=cpu_target,
            kind="net", unit="requests",
            description=f"echo server (protocol) over TLS, {size_name[:-1]} KiB messages, "
                        f"{CONNS} connections, C OpenSSL client")))
    found.append(("tls_idle_conns", idle(tls=True), dict(
        n=TLS_IDLE_CONNS, quick_n=TLS_IDLE_CONNS, full_n=TLS_IDLE_CONNS, group="tls", target=1.0,
        repeat=1, kind="memory", unit="bytes/conn",
        description="server memory per TLS connection after the handshake, N idle connections")))
    return found
