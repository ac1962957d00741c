"""The load client in Python, for machines without a C compiler.

    python echo_client.py echo HOST PORT CONNS MSG_SIZE REQUESTS MAX_MS
    python echo_client.py idle HOST PORT CONNS

Same arguments, behaviour and JSON output as echo_client.c (read its
comment): one thread on epoll, no event loop, so it is as cheap as Python
gets; still slower than the C client, so with small messages it may be the
bottleneck. Runs as a script, with no import from the project.
"""
import json
import os
import resource
import select
import socket
import struct
import sys
import time

STALL_SECONDS = 20
READ_SIZE = 256 * 1024
IDLE_BATCH = 64


def die(message):
    sys.stderr.write(f"echo_client.py: {message}\n")
    sys.exit(1)


def cpu_times():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def open_conn(address):
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def poll(ep):
    events = ep.poll(STALL_SECONDS)
    if not events:
        die(f"no progress for {STALL_SECONDS} s: the server stopped answering")
    return events


class Conn:
    __slots__ = ("sock", "todo", "sent", "received", "seq", "want_out")


def run_echo(address, nconns, msg_size, requests, max_seconds):
    pattern = bytes(i & 0xFF for i in range(msg_size + 256))
    view = memoryview(pattern)
    ep = select.epoll()
    conns = {}
    for i in range(nconns):
        c = Conn()
        c.sock = open_conn(address)
        c.todo = requests // nconns + (i < requests % nconns)
        c.sent = c.received = 0
        c.seq = i
        c.want_out = False
        conns[c.sock.fileno()] = c
        ep.register(c.sock.fileno(), select.EPOLLIN)

    def send_some(c):
        msg = view[c.seq & 0xFF:(c.seq & 0xFF) + msg_size]
        while c.sent < msg_size:
            try:
                c.sent += c.sock.send(msg[c.sent:])
            except BlockingIOError:
                break
        want_out = c.sent < msg_size
        if want_out != c.want_out:
            c.want_out = want_out
            ep.modify(c.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if want_out else 0))

    completed = 0

    def receive_some(c):
        nonlocal completed
        while True:
            try:
                data = c.sock.recv(READ_SIZE)
            except BlockingIOError:
                return False
            if not data:
                die(f"the server closed a connection {c.todo} request(s) early")
            start = (c.seq & 0xFF) + c.received
            if c.received + len(data) > c.sent:
                die("the server sent more than it was sent")
            if data != view[start:start + len(data)]:
                die("the echo differs from the message")
            c.received += len(data)
            if c.received == msg_size:
                completed += 1
                c.todo -= 1
                if not c.todo or time.perf_counter() >= deadline:
                    return True
                c.seq += 1
                c.sent = c.received = 0
                send_some(c)

    u0, s0 = cpu_times()
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    active = 0
    for c in conns.values():
        if c.todo:
            active += 1
            send_some(c)
    while active:
        for fd, mask in poll(ep):
            c = conns.get(fd)
            if c is None:
                continue
            if mask & select.EPOLLOUT and c.sent < msg_size:
                send_some(c)
            if mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) and receive_some(c):
                ep.unregister(fd)
                del conns[fd]
                c.sock.close()
                active -= 1
    seconds = time.perf_counter() - t0
    u1, s1 = cpu_times()
    print(json.dumps({"requests": completed, "seconds": seconds, "user": u1 - u0, "sys": s1 - s0}),
          flush=True)


def run_idle(address, nconns):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = nconns + 64
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            die(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    ep = select.epoll()
    socks = []
    t0 = time.perf_counter()
    for start in range(0, nconns, IDLE_BATCH):
        batch = {}
        for _ in range(min(IDLE_BATCH, nconns - start)):
            sock = open_conn(address)
            sock.send(b"x")
            socks.append(sock)
            batch[sock.fileno()] = sock
            ep.register(sock.fileno(), select.EPOLLIN)
        while batch:
            for fd, _ in poll(ep):
                try:
                    data = batch[fd].recv(64)
                except BlockingIOError:
                    continue
                if data != b"x":
                    die(f"bad echo of the first byte: {data!r}")
                ep.unregister(fd)
                del batch[fd]
    print(json.dumps({"ready": True, "connections": nconns, "seconds": time.perf_counter() - t0}),
          flush=True)
    while os.read(0, 64):
        pass
    for sock in socks:
        # A reset, not an orderly close: see echo_client.c.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    print(json.dumps({"closed": nconns}), flush=True)


def main(argv):
    if len(argv) < 4:
        die("usage: echo_client.py echo HOST PORT CONNS MSG_SIZE REQUESTS MAX_MS | idle HOST PORT CONNS")
    mode, host, port, nconns = argv[0], argv[1], int(argv[2]), int(argv[3])
    if mode == "echo" and len(argv) == 7:
        run_echo((host, port), nconns, int(argv[4]), int(argv[5]), int(argv[6]) / 1000)
    elif mode == "idle" and len(argv) == 4:
        run_idle((host, port), nconns)
    else:
        die("usage: echo_client.py echo HOST PORT CONNS MSG_SIZE REQUESTS MAX_MS | idle HOST PORT CONNS")


if __name__ == "__main__":
    main(sys.argv[1:])
