"""uvicorn serving a hello-world ASGI app over TLS (and, for reference, plain
HTTP) on each loop, loaded by wrk (a separate C process with its own
OpenSSL), the loops interleaved round by round.

    python -m benchmarks.uvicorn_tls [--rounds 3] [--seconds 5] [--connections 10]

This is what a user of uvicorn would run: the real server, unchanged, with
`--loop asyncio`, `--loop uvloop` and `--loop fastloop:new_event_loop`,
keep-alive connections and the certificate in tls_cert.pem. It prints
requests/s per loop (the best round) and fastloop's ratios. Needs uvicorn,
httptools (uvicorn's fast HTTP parser, as `uvicorn[standard]` installs it)
and wrk (Debian's package); `scripts/bench uvicorn` installs them and runs
this. Times on a shared machine mean little; the ratios, from one run, do.
"""
import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from benchmarks.echo_server import TLS_CERT

LOOP_OPTIONS = {
    "asyncio": "asyncio",
    "uvloop": "uvloop",
    "fastloop": "fastloop:new_event_loop",
}

APP = "benchmarks.uvicorn_tls:app"
BODY = b"Hello, world!"


async def app(scope, receive, send):
    """The smallest ASGI app that answers every request with 200 and a body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("uvicorn did not start listening")


def one_round(loop, tls, seconds, connections):
    """Requests/s of wrk against uvicorn on `loop`."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1",
           "--port", str(port), "--loop", LOOP_OPTIONS[loop], "--no-access-log", "--log-level", "warning"]
    if tls:
        cmd += ["--ssl-keyfile", TLS_CERT, "--ssl-certfile", TLS_CERT]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, proc)
        scheme = "https" if tls else "http"
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                              f"{scheme}://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {loop}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    loops = list(LOOP_OPTIONS)
    for tls in (True, False):
        best = {}
        for r in range(args.rounds):
            # Interleaved, and each round starts with another loop.
            for loop in loops[r % 3:] + loops[:r % 3]:
                rps = one_round(loop, tls, args.seconds, args.connections)
                best[loop] = max(best.get(loop, 0.0), rps)
                print(f"  {'https' if tls else 'http'} [{r + 1}/{args.rounds}] {loop}: "
                      f"{rps:,.0f} requests/s", flush=True)
        name = "uvicorn hello over TLS" if tls else "uvicorn hello, plain HTTP"
        print(f"{name}, keep-alive, {args.connections} connections, best of {args.rounds}: "
              + ", ".join(f"{loop} {best[loop]:,.0f}" for loop in loops)
              + f"; fastloop/uvloop {best['fastloop'] / best['uvloop']:.2f}x,"
              f" fastloop/asyncio {best['fastloop'] / best['asyncio']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
