"""Side-by-side benchmarks of asyncio's default loop, uvloop and fastloop.

    python -m benchmarks.run [--quick | --full] [--only a,b] [--loops asyncio,uvloop,fastloop]
    scripts/bench [same options]

Groups for --only (names of single workloads work too, mixed freely):
    core   the default: callbacks, timers, tasks, futures, task memory
    net    the network suite, about five minutes more: the echo group and
           idle_conns; run it with `--only net`, or everything with `--only all`
    echo   echo servers in four styles (protocol, buffered, streams, sock) and
           three message sizes (1, 10, 100 KiB) over 10 connections, driven
           by a separate load client (echo_client.c, compiled with gcc on first
           use; echo_client.py where there is no compiler). Reports the
           client's requests/s and the server process's own CPU time per
           request, user and sys, with ratios and targets on both.
    tls    TLS (issue #12): the Protocol echo server over TLS at 1 and 64 KiB,
           10 connections, driven by echo_client.c built with OpenSSL
           (-DECHO_TLS; needs libssl-dev), and tls_idle_conns: memory per
           idle TLS connection after the handshake, 1,000 connections.
           `python -m benchmarks.tls_cpu_share` splits the TLS server's
           instructions between OpenSSL, the ssl module, the loop and the
           interpreter (callgrind).
    all    everything
idle_conns holds 10,000 idle connections open and reports the server's
resident memory per connection (it raises RLIMIT_NOFILE, or is skipped with
the reason). A loop that raises NotImplementedError for a method a workload
needs shows "n/i" (not implemented) for that pair instead of failing the run.

Files, one concern each:
    loops.py          make an event loop by name; report whether a loop is usable
    workloads.py      the workloads and their registry; runs one (workload, loop) pair
    net_workloads.py  the network workloads (registered by workloads.py)
    echo_server.py    the echo server in each API style
    load_client.py    builds, starts and reads the load client process
    echo_client.c     the load client (echo_client.py: the same, in Python);
                      built with -DECHO_TLS, the TLS load client
    tls_cert.pem      the TLS echo server's self-signed certificate and key
    tls_cpu_share.py  callgrind split of the TLS server's instructions by object
    run.py            runs every pair in fresh subprocesses, best of K repeats
    report.py         the tables printed at the end
"""
