/* The load client of the network benchmarks: one process, one thread, epoll.
 *
 *   echo_client echo HOST PORT CONNS MSG_SIZE REQUESTS MAX_MS
 *       CONNS connections; each sends a MSG_SIZE message, waits for the
 *       whole echo (checking every byte), and repeats; REQUESTS in all,
 *       split evenly over the connections, or fewer if MAX_MS milliseconds
 *       pass first (a bound on a run's length on a slow or busy machine).
 *       Then it closes them and prints {"requests": <done>, "seconds": ...,
 *       "user": ..., "sys": ...}.
 *   echo_client idle HOST PORT CONNS
 *       Opens CONNS connections (in batches, so the server's accept queue
 *       never overflows), sends one byte on each and waits for its echo, so
 *       the server holds all of them; prints {"ready": ..., ...}; then waits
 *       for its stdin to close, resets every connection and prints
 *       {"closed": ...}.
 *
 * Written in C so that the client is not the bottleneck: the benchmark
 * measures the server. Errors go to stderr with exit status 1; a stall of
 * STALL_SECONDS without progress is an error, never a hang.
 *
 * Built with -DECHO_TLS (and -lssl -lcrypto) it speaks TLS over the same
 * connections: a blocking handshake right after the connect, then the same
 * epoll loop through SSL_write/SSL_read. The server's certificate is not
 * verified (the benchmark's is self-signed); an echo run ends each
 * connection with a close_notify, the idle run with a reset.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef ECHO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define STALL_SECONDS 20
#define READ_SIZE (256 * 1024)
/* Below any server's listen backlog (asyncio's and uvloop's default is 100). */
#define IDLE_BATCH 64

typedef struct {
    int fd;
#ifdef ECHO_TLS
    SSL *ssl;
#endif
    long todo;          /* requests still to complete, the current one included */
    size_t sent;        /* bytes of the current message sent */
    size_t received;    /* bytes of its echo received */
    unsigned seq;       /* the current message starts at pattern[seq & 0xff] */
    int want_out;       /* EPOLLOUT armed: the kernel buffer was full */
} conn_t;

static unsigned char *pattern;  /* pattern[i] == i & 0xff; messages are windows of it */
static unsigned char readbuf[READ_SIZE];
static size_t msg_size;
static int epfd;
static double deadline;     /* CLOCK_MONOTONIC seconds; no new request after it */
static long completed;      /* requests done, all connections together */
#ifdef ECHO_TLS
static SSL_CTX *tls_ctx;
#endif

static void
die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "echo_client: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
cpu_times(double *user, double *sys)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static long
parse_long(const char *text, const char *what, long min)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || *end || end == text || v < min)
        die("bad %s: %s", what, text);
    return v;
}

/* The idle benchmark holds more sockets than the default soft limit. */
static void
raise_fd_limit(long needed)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || (long)rl.rlim_cur >= needed)
        return;
    if (rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max < needed)
        die("RLIMIT_NOFILE hard limit %ld < %ld needed", (long)rl.rlim_max, needed);
    rl.rlim_cur = needed;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("cannot raise RLIMIT_NOFILE to %ld: %s", needed, strerror(errno));
}

#ifdef ECHO_TLS
static void
die_tls(const char *what)
{
    char text[256];
    unsigned long code = ERR_get_error();

    ERR_error_string_n(code, text, sizeof(text));
    die("%s: %s", what, code ? text : strerror(errno));
}

static void
tls_init(void)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx)
        die_tls("SSL_CTX_new");
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    /* SSL_write returns what one record took, like send(); a retry after
     * SSL_ERROR_WANT_WRITE passes the same bytes again. */
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* Did the last SSL call on c only lack data or room? Dies on anything else. */
static int
tls_would_block(conn_t *c, int ret, const char *what)
{
    int err = SSL_get_error(c->ssl, ret);

    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 1;
    if (err == SSL_ERROR_SYSCALL && errno == EINTR)
        return 1;
    die_tls(what);
    return 0;
}
#endif

/* A blocking connect (the kernel completes it from the listen backlog even
 * while the server is busy) and, for TLS, handshake; then non-blocking for
 * the epoll loop. */
static void
open_conn(conn_t *c, const struct sockaddr_in *addr)
{
    int one = 1, fd;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0)
        die("connect: %s", strerror(errno));
    /* Small messages must leave at once, as every asyncio transport does. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef ECHO_TLS
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, fd))
        die_tls("SSL_new");
    if (SSL_connect(c->ssl) != 1)
        die_tls("TLS handshake");
#endif
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        die("fcntl: %s", strerror(errno));
    c->fd = fd;
}

/* Close a connection: with a close_notify first (TLS), or with a reset. */
static void
close_conn(conn_t *c, int reset)
{
    if (reset) {
        /* An orderly close would leave thousands of sockets in TIME_WAIT
         * for a minute, and the next run's connects would crawl through
         * the port space looking for a free port. */
        struct linger abort_close = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
    }
#ifdef ECHO_TLS
    if (!reset)
        SSL_shutdown(c->ssl);   /* sends close_notify; the answer is not awaited */
    SSL_free(c->ssl);
    c->ssl = NULL;
#endif
    close(c->fd);
    c->fd = -1;
}

/* Bytes sent (> 0), or -1 when the kernel (or TLS) takes nothing now. */
static ssize_t
conn_send(conn_t *c, const void *buf, size_t len)
{
#ifdef ECHO_TLS
    int n = SSL_write(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    tls_would_block(c, n, "SSL_write");
    return -1;
#else
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            die("send: %s", strerror(errno));
        return -1;
    }
#endif
}

/* Bytes received (> 0), 0 at the end of the stream, -1 when none are there. */
static ssize_t
conn_recv(conn_t *c, void *buf, size_t len)
{
#ifdef ECHO_TLS
    int n = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    if (SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN)
        return 0;
    tls_would_block(c, n, "SSL_read");
    return -1;
#else
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            die("recv: %s", strerror(errno));
        return -1;
    }
#endif
}

static void
watch(conn_t *c, int op)
{
    struct epoll_event ev;

    ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(epfd, op, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static int
wait_events(struct epoll_event *events, int max)
{
    int n;

    do {
        n = epoll_wait(epfd, events, max, STALL_SECONDS * 1000);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        die("epoll_wait: %s", strerror(errno));
    if (n == 0)
        die("no progress for %d s: the server stopped answering", STALL_SECONDS);
    return n;
}

/* Send what the kernel takes of the current message; arm EPOLLOUT for the rest. */
static void
send_some(conn_t *c)
{
    const unsigned char *msg = pattern + (c->seq & 0xff);
    int want_out;

    while (c->sent < msg_size) {
        ssize_t n = conn_send(c, msg + c->sent, msg_size - c->sent);
        if (n < 0)
            break;
        c->sent += (size_t)n;
    }
    want_out = c->sent < msg_size;
    if (want_out != c->want_out) {
        c->want_out = want_out;
        watch(c, EPOLL_CTL_MOD);
    }
}

/* Read the echo; returns 1 when the connection finished all its requests. */
static int
receive_some(conn_t *c)
{
    for (;;) {
        ssize_t n = conn_recv(c, readbuf, READ_SIZE);
        if (n < 0)
            return 0;
        if (n == 0)
            die("the server closed a connection %ld request(s) early", c->todo);
        if (c->received + (size_t)n > c->sent)
            die("the server sent %zu bytes more than it was sent",
                c->received + (size_t)n - c->sent);
        if (memcmp(readbuf, pattern + (c->seq & 0xff) + c->received, (size_t)n) != 0)
            die("the echo differs from the message");
        c->received += (size_t)n;
        if (c->received == msg_size) {
            completed++;
            if (--c->todo == 0 || now() >= deadline)
                return 1;
            c->seq++;
            c->sent = c->received = 0;
            send_some(c);
        }
    }
}

static int
run_echo(const struct sockaddr_in *addr, long nconns, long requests, double max_seconds)
{
    struct epoll_event events[64];
    double t0, t1, u0, s0, u1, s1;
    conn_t *conns;
    long i, active = 0;

    pattern = malloc(msg_size + 256);
    conns = calloc((size_t)nconns, sizeof(*conns));
    if (!pattern || !conns)
        die("out of memory");
    for (i = 0; i < (long)msg_size + 256; i++)
        pattern[i] = (unsigned char)i;
    for (i = 0; i < nconns; i++) {
        open_conn(&conns[i], addr);
        /* Spread the remainder so the total is exactly REQUESTS. */
        conns[i].todo = requests / nconns + (i < requests % nconns);
        conns[i].seq = (unsigned)i;
        watch(&conns[i], EPOLL_CTL_ADD);
    }
    cpu_times(&u0, &s0);
    t0 = now();
    deadline = t0 + max_seconds;
    for (i = 0; i < nconns; i++) {
        if (conns[i].todo > 0) {
            active++;
            send_some(&conns[i]);
        }
    }
    while (active > 0) {
        int n = wait_events(events, 64);
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            if (c->fd < 0)
                continue;
            if ((events[k].events & EPOLLOUT) && c->sent < msg_size)
                send_some(c);
            if ((events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && receive_some(c)) {
                /* Closing unregisters it; later events of this batch skip it. */
                close_conn(c, 0);
                active--;
            }
        }
    }
    t1 = now();
    cpu_times(&u1, &s1);
    printf("{\"requests\": %ld, \"seconds\": %.6f, \"user\": %.6f, \"sys\": %.6f}\n",
           completed, t1 - t0, u1 - u0, s1 - s0);
    return 0;
}

static int
run_idle(const struct sockaddr_in *addr, long nconns)
{
    struct epoll_event events[64];
    char byte = 'x', line[64];
    conn_t *conns;
    double t0;
    long i, start;

    raise_fd_limit(nconns + 64);
    conns = calloc((size_t)nconns, sizeof(*conns));
    if (!conns)
        die("out of memory");
    t0 = now();
    for (start = 0; start < nconns; start += IDLE_BATCH) {
        long end = start + IDLE_BATCH < nconns ? start + IDLE_BATCH : nconns;
        long waiting = end - start;

        for (i = start; i < end; i++) {
            open_conn(&conns[i], addr);
            if (conn_send(&conns[i], &byte, 1) != 1)
                die("could not send the first byte");
            watch(&conns[i], EPOLL_CTL_ADD);
        }
        while (waiting > 0) {
            int n = wait_events(events, 64);
            for (int k = 0; k < n; k++) {
                conn_t *c = events[k].data.ptr;
                ssize_t got = conn_recv(c, line, sizeof(line));
                if (got < 0)
                    continue;
                if (got != 1 || line[0] != byte)
                    die("bad echo of the first byte (%zd bytes)", got);
                /* Idle from now on: stop watching it. */
                if (epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
                    die("epoll_ctl: %s", strerror(errno));
                waiting--;
            }
        }
    }
    printf("{\"ready\": true, \"connections\": %ld, \"seconds\": %.6f}\n", nconns, now() - t0);
    fflush(stdout);
    while (read(0, line, sizeof(line)) > 0)
        ;
    for (i = 0; i < nconns; i++)
        close_conn(&conns[i], 1);
    printf("{\"closed\": %ld}\n", nconns);
    return 0;
}

int
main(int argc, char **argv)
{
    struct sockaddr_in addr;
    long nconns;

    if (argc < 5)
        die("usage: echo_client echo HOST PORT CONNS MSG_SIZE REQUESTS MAX_MS | idle HOST PORT CONNS");
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1)
        die("bad IPv4 address: %s", argv[2]);
    addr.sin_port = htons((unsigned short)parse_long(argv[3], "port", 1));
    nconns = parse_long(argv[4], "connection count", 1);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
#ifdef ECHO_TLS
    tls_init();
#endif
    if (strcmp(argv[1], "echo") == 0 && argc == 8) {
        msg_size = (size_t)parse_long(argv[5], "message size", 1);
        return run_echo(&addr, nconns, parse_long(argv[6], "request count", 0),
                        (double)parse_long(argv[7], "milliseconds", 1) / 1000.0);
    }
    if (strcmp(argv[1], "idle") == 0 && argc == 5)
        return run_idle(&addr, nconns);
    die("usage: echo_client echo HOST PORT CONNS MSG_SIZE REQUESTS MAX_MS | idle HOST PORT CONNS");
    return 1;
}
