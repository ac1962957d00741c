"""Echo server in the sock_recv/sock_sendall style, on asyncio, uvloop and
fastloop, driven by a load client in separate processes.

    python -m benchmarks.sock_echo [--size 1024,10240,102400] [--conns 10]
                                   [--seconds 3] [--loops asyncio,uvloop,fastloop]

Each server runs in its own process; the load comes from `--clients`
processes (blocking sockets, one ping-pong connection per thread-free
process slot) so that the client is not the bottleneck. Reported: requests/s
and the server's own user and system CPU time per request.
"""
import argparse
import multiprocessing as mp
import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _new_loop(name):
    if name == "fastloop":
        import fastloop
        return fastloop.new_event_loop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    import asyncio
    return asyncio.new_event_loop()


def server_main(loop_name, port_q, stop_r):
    import asyncio
    loop = _new_loop(loop_name)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)

    async def handle(conn):
        recv, sendall = loop.sock_recv, loop.sock_sendall
        try:
            while True:
                data = await recv(conn, 262144)
                if not data:
                    break
                await sendall(conn, data)
        except OSError:
            pass
        finally:
            conn.close()

    async def serve():
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.create_task(handle(conn))

    def on_stop():
        loop.remove_reader(stop_r)
        loop.stop()

    loop.add_reader(stop_r, on_stop)
    loop.create_task(serve())
    port_q.put(listener.getsockname()[1])
    loop.run_forever()


def client_main(port, size, nconns, seconds, start_evt, out_q):
    """nconns connections in one process, driven round-robin: each sends a
    message, then every one reads its echo back (the connections overlap on
    the server)."""
    import selectors
    msg = b"x" * size
    socks = []
    for _ in range(nconns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    start_evt.wait()
    n = 0
    deadline = time.monotonic() + seconds
    buf = bytearray(size)
    view = memoryview(buf)
    while time.monotonic() < deadline:
        for s in socks:
            s.sendall(msg)
        for s in socks:
            got = 0
            while got < size:
                r = s.recv_into(view[got:], size - got)
                if not r:
                    raise SystemExit("server closed")
                got += r
        n += nconns
    for s in socks:
        s.close()
    out_q.put(n)


def _cpu_times(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def bench(loop_name, size, conns, clients, seconds):
    ctx = mp.get_context("fork")
    port_q, out_q = ctx.Queue(), ctx.Queue()
    stop_r, stop_w = os.pipe()
    srv = ctx.Process(target=server_main, args=(loop_name, port_q, stop_r))
    srv.start()
    port = port_q.get(timeout=10)
    start = ctx.Event()
    per = [conns // clients + (1 if i < conns % clients else 0) for i in range(clients)]
    procs = [ctx.Process(target=client_main,
                         args=(port, size, k, seconds, start, out_q))
             for k in per if k]
    for p in procs:
        p.start()
    time.sleep(0.3)
    u0, s0 = _cpu_times(srv.pid)
    t0 = time.monotonic()
    start.set()
    total = sum(out_q.get(timeout=seconds + 30) for _ in procs)
    elapsed = time.monotonic() - t0
    u1, s1 = _cpu_times(srv.pid)
    for p in procs:
        p.join()
    os.write(stop_w, b"x")
    srv.join(10)
    os.close(stop_r)
    os.close(stop_w)
    return total / elapsed, (u1 - u0) / total * 1e6, (s1 - s0) / total * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1024,10240,102400")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--loops", default="asyncio,uvloop,fastloop")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    print(f"{'size':>7} {'loop':>9} {'req/s':>10} {'user us/req':>12} {'sys us/req':>11}")
    for size in [int(s) for s in args.size.split(",")]:
        for name in args.loops.split(","):
            rps, user, sys_ = bench(name, size, args.conns, args.clients, args.seconds)
            print(f"{size:>7} {name:>9} {rps:>10.0f} {user:>12.2f} {sys_:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
