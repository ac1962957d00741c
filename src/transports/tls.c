/* TLS: the per-record path of asyncio's sslproto.SSLProtocol, in C.

   fastloop._tls.SSLProtocol is `class SSLProtocol(_core.TLSProtocol,
   sslproto.SSLProtocol)`: asyncio's own class keeps the cold path
   (handshake, shutdown, timeouts, errors, extra info, abort) for each
   Python version, and the methods it calls for every record resolve to
   the C ones here first: get_buffer/buffer_updated (ciphertext in),
   _do_read (plaintext to the app protocol), _write_appdata/_do_write/
   _process_outgoing (app data out) and the flow control of both
   directions. Each does what asyncio's method of the same name does,
   with the same state checks, the same calls on the app protocol and the
   same errors; where a state is not ours it calls asyncio's Python method.

   The attributes both halves share (`_state`, `_sslobj`, `_incoming`,
   `_write_backlog`, the paused flags, the water marks, ...) are C fields
   behind asyncio's names, so asyncio's Python code reads and writes the
   very fields the C code uses, and the C code reads them without a
   lookup.

   Crossings into the ssl module are direct: the method descriptors of
   _ssl._SSLSocket (SSLObject's `_sslobj`) and _ssl.MemoryBIO are called
   with the object as first argument (no bound method, no Python wrapper),
   a read that would only raise SSLWantReadError (nothing left in the
   incoming BIO) is not made, and the plaintext is read into the loop's
   one scratch buffer (or, for a large batch, straight into the bytes
   object handed to data_received) instead of asyncio's 256 KiB buffer per
   connection.

   _core.TLSTransport is the C base of the application's transport
   (fastloop._tls.SSLTransport, whose other base is asyncio's
   _SSLProtocolTransport): write() and writelines() go straight to the C
   write path. */
#include "transports/tls.h"
#include <string.h>
#include "transports/stream.h"
#include "transports/transport.h"

/* The plaintext scratch buffer, one per loop: what asyncio's max_size is
   for each connection. */
#define SCRATCH_SIZE (256 * 1024)

/* A batch of plaintext at least this large is read straight into the
   bytes object that data_received() gets (no copy); up to DIRECT_MAX at a
   time (a larger bytes object would be mmapped: see NOTES.md, "Reads"). */
#define DIRECT_MIN (4 * 1024)
#define DIRECT_MAX (96 * 1024)

/* sslproto.SSLProtocolState, as codes. */
enum {
    ST_UNKNOWN = 0,
    ST_UNWRAPPED,
    ST_DO_HANDSHAKE,
    ST_WRAPPED,
    ST_FLUSHING,
    ST_SHUTDOWN,
    ST_N
};

/* The water marks, in the order of their getset closures. */
enum { OUT_HIGH, OUT_LOW, IN_HIGH, IN_LOW, N_MARKS };

typedef struct {
    PyObject_HEAD
    PyObject *state;            /* _state: an SSLProtocolState */
    PyObject *loop;             /* _loop */
    PyObject *app_protocol;     /* _app_protocol */
    PyObject *app_get_buffer;   /* _app_protocol_get_buffer */
    PyObject *app_buffer_updated;
    PyObject *transport;        /* _transport: the stream transport */
    PyObject *sslobj;           /* _sslobj: an ssl.SSLObject */
    PyObject *incoming, *outgoing;      /* the MemoryBIOs */
    PyObject *write_backlog;    /* a deque of app data not yet encrypted */
    PyObject *marks[N_MARKS];   /* the water marks as set */
    PyObject *c_sslobj;         /* sslobj._sslobj (_ssl._SSLSocket), once
                                   looked up; Py_None: sslobj is not a
                                   plain SSLObject, call its methods */
    PyObject *scratch;          /* the loop's plaintext scratch bytearray */
    Py_ssize_t write_buffer_size;
    Py_ssize_t conn_lost;
    Py_ssize_t mark_v[N_MARKS]; /* the marks, when marks_exact */
    int state_code;
    char marks_exact;           /* every mark is an int that fits */
    char app_reading_paused, ssl_reading_paused;
    char ssl_writing_paused, app_writing_paused;
    char eof_received, app_is_buffer;
} FlTLS;

typedef struct {
    PyObject *ssl_protocol;     /* _ssl_protocol */
    char closed;                /* _closed */
} FlTLSTransport;

static Py_ssize_t transport_offset;
#define TT(o) ((FlTLSTransport *)((char *)(o) + transport_offset))

static PyTypeObject *tls_type, *tls_transport_type;
static PyObject *state_members[ST_N];
static Py_ssize_t log_threshold;        /* LOG_THRESHOLD_FOR_CONNLOST_WRITES */
static PyObject *get_buffer_descr, *buffer_updated_descr;

/* What the ssl module gives, taken when the first connection needs it
   (importing fastloop must not need ssl). */
static int ssl_ready;
static PyTypeObject *sslobject_type, *sslsocket_type, *bio_type;
static PyObject *sock_read, *sock_write, *bio_read, *bio_write, *bio_pending;
static PyObject *ssl_again;     /* sslproto.SSLAgainErrors */

static PyObject *str_read, *str_write, *str_pending, *str_sslobj_attr,
    *str_data_received, *str_pause_writing, *str_resume_writing,
    *str_pause_reading, *str_resume_reading, *str_fatal_error,
    *str_call_eof_received, *str_start_shutdown, *str_do_read,
    *str_do_handshake, *str_do_flush, *str_do_shutdown, *str_call_soon,
    *str_append, *str_write_appdata, *str_app_transport, *str_scratch,
    *str_get_buffer, *str_buffer_updated;

static int
ssl_init(void)
{
    if (ssl_ready) {
        return 0;
    }
    PyObject *sslobject = fl_import_attr("ssl", "SSLObject");
    PyObject *sock = fl_import_attr("_ssl", "_SSLSocket");
    PyObject *bio = fl_import_attr("_ssl", "MemoryBIO");
    PyObject *again = fl_import_attr("asyncio.sslproto", "SSLAgainErrors");
    if (sslobject == NULL || sock == NULL || bio == NULL || again == NULL) {
        goto error;
    }
    if (!PyType_Check(sslobject) || !PyType_Check(sock) || !PyType_Check(bio)) {
        PyErr_SetString(PyExc_ImportError, "unexpected ssl module types");
        goto error;
    }
    sock_read = PyObject_GetAttr(sock, str_read);
    sock_write = PyObject_GetAttr(sock, str_write);
    bio_read = PyObject_GetAttr(bio, str_read);
    bio_write = PyObject_GetAttr(bio, str_write);
    bio_pending = PyObject_GetAttr(bio, str_pending);
    if (sock_read == NULL || sock_write == NULL || bio_read == NULL
            || bio_write == NULL || bio_pending == NULL) {
        goto error;
    }
    if (Py_TYPE(bio_pending)->tp_descr_get == NULL) {
        PyErr_SetString(PyExc_ImportError, "MemoryBIO.pending is not a descriptor");
        goto error;
    }
    sslobject_type = (PyTypeObject *)sslobject;
    sslsocket_type = (PyTypeObject *)sock;
    bio_type = (PyTypeObject *)bio;
    ssl_again = again;
    ssl_ready = 1;
    return 0;
error:
    Py_XDECREF(sslobject);
    Py_XDECREF(sock);
    Py_XDECREF(bio);
    Py_XDECREF(again);
    Py_CLEAR(sock_read);
    Py_CLEAR(sock_write);
    Py_CLEAR(bio_read);
    Py_CLEAR(bio_write);
    Py_CLEAR(bio_pending);
    return -1;
}

/* ---- crossings into the ssl module ---- */

/* The error just raised is one of SSLAgainErrors (want read, syscall):
   asyncio's loops end on it quietly. */
static int
take_again(void)
{
    if (ssl_again != NULL && PyErr_ExceptionMatches(ssl_again)) {
        PyErr_Clear();
        return 1;
    }
    return 0;
}

/* A field not set (a bare TLSProtocol.__new__()) reads as None, which
   then fails as asyncio's code would on None. */
static inline PyObject *
or_none(PyObject *field)
{
    return field != NULL ? field : Py_None;
}

/* bio.<name>(arg) (arg NULL: no argument); bio borrowed, may be NULL. */
static PyObject *
bio_call(PyObject *bio, PyObject *descr, PyObject *name, PyObject *arg)
{
    bio = Py_NewRef(or_none(bio));
    PyObject *args[3] = {NULL, bio, arg};
    size_t n = arg ? 2 : 1;
    PyObject *r;
    if (ssl_ready && Py_IS_TYPE(bio, bio_type)) {
        r = PyObject_Vectorcall(descr, args + 1, n, NULL);
    }
    else {
        r = PyObject_VectorcallMethod(name, args + 1,
                                      n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_DECREF(bio);
    return r;
}

/* bio.pending: -1 with an error. */
static Py_ssize_t
bio_pending_of(PyObject *bio)
{
    PyObject *v;
    bio = Py_NewRef(or_none(bio));
    if (ssl_ready && Py_IS_TYPE(bio, bio_type)) {
        v = Py_TYPE(bio_pending)->tp_descr_get(bio_pending, bio,
                                               (PyObject *)bio_type);
    }
    else {
        v = PyObject_GetAttr(bio, str_pending);
    }
    Py_DECREF(bio);
    if (v == NULL) {
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return n;
}

/* The _ssl._SSLSocket behind self->sslobj, if it is a plain SSLObject
   (whose read/write only pass their arguments on); NULL: call sslobj's
   own methods. Looked up once per SSLObject. */
static PyObject *
c_sslobj_of(FlTLS *self)
{
    if (self->c_sslobj == NULL) {
        PyObject *c = NULL;
        if (self->sslobj != NULL && Py_IS_TYPE(self->sslobj, sslobject_type)) {
            c = PyObject_GetAttr(self->sslobj, str_sslobj_attr);
            if (c == NULL) {
                PyErr_Clear();      /* not there yet: the Python method says so */
            }
            else if (!Py_IS_TYPE(c, sslsocket_type)) {
                Py_CLEAR(c);
            }
        }
        self->c_sslobj = c ? c : Py_NewRef(Py_None);
    }
    return self->c_sslobj == Py_None ? NULL : self->c_sslobj;
}

/* sslobj.<read|write>(args...): the result, or NULL with an error. */
static PyObject *
ssl_call(FlTLS *self, PyObject *descr, PyObject *name, PyObject **args1,
         size_t nargs)
{
    if (self->sslobj == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_sslobj");
        return NULL;
    }
    /* Held for the call: _ssl releases the GIL while OpenSSL works, and
       another thread may set _sslobj meanwhile. args1[-1] is free for it. */
    PyObject *c = c_sslobj_of(self);
    PyObject *obj = Py_NewRef(c != NULL ? c : self->sslobj);
    PyObject *r;
    args1[-1] = obj;
    if (c != NULL) {
        r = PyObject_Vectorcall(descr, args1 - 1, nargs + 1, NULL);
    }
    else {
        r = PyObject_VectorcallMethod(name, args1 - 1,
                                      (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      NULL);
    }
    Py_DECREF(obj);
    return r;
}

#define AGAIN (-2)

/* sslobj.read(len, buffer): the count, AGAIN, or -1 with an error. */
static Py_ssize_t
ssl_read_into(FlTLS *self, PyObject *buffer, Py_ssize_t len)
{
    PyObject *n = PyLong_FromSsize_t(len);
    if (n == NULL) {
        return -1;
    }
    PyObject *args[4] = {NULL, NULL, n, buffer};
    PyObject *r = ssl_call(self, sock_read, str_read, args + 2, 2);
    Py_DECREF(n);
    if (r == NULL) {
        return take_again() ? AGAIN : -1;
    }
    Py_ssize_t count = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    return count;
}

/* sslobj.read(len, <the memory at ptr>). */
static Py_ssize_t
ssl_read_at(FlTLS *self, char *ptr, Py_ssize_t len)
{
    PyObject *view = PyMemoryView_FromMemory(ptr, len, PyBUF_WRITE);
    if (view == NULL) {
        return -1;
    }
    Py_ssize_t n = ssl_read_into(self, view, len);
    Py_DECREF(view);
    return n;
}

/* sslobj.write(data): the count, AGAIN, or -1 with an error. */
static Py_ssize_t
ssl_write(FlTLS *self, PyObject *data)
{
    PyObject *args[3] = {NULL, NULL, data};
    PyObject *r = ssl_call(self, sock_write, str_write, args + 2, 1);
    if (r == NULL) {
        return take_again() ? AGAIN : -1;
    }
    Py_ssize_t count = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    return count;
}

/* ---- small helpers ---- */

static PyObject *
call_self0(FlTLS *self, PyObject *name)
{
    return fl_call_method0((PyObject *)self, name);
}

/* self.<name>() for its effect: 0 or -1. */
static int
run_self(FlTLS *self, PyObject *name)
{
    PyObject *r = call_self0(self, name);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* asyncio's `except Exception as ex: self._fatal_error(ex, message)`
   around a hot method: an Exception goes to _fatal_error; anything else
   stays raised (-1). */
static int
fatal_on_exception(FlTLS *self, const char *message)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *exc = fl_err_get_raised();
    PyObject *msg = PyUnicode_FromString(message);
    if (msg == NULL) {
        Py_DECREF(exc);
        return -1;
    }
    PyObject *args[3] = {(PyObject *)self, exc, msg};
    PyObject *r = PyObject_VectorcallMethod(str_fatal_error, args, 3, NULL);
    Py_DECREF(exc);
    Py_DECREF(msg);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The loop's scratch bytearray (made on first use and kept on the loop,
   so every connection of the loop shares it). The loop runs in one thread
   and a connection's plaintext is handed on before the next one reads,
   so one buffer per loop is enough; it is a Python object so that
   get_buffer()'s memoryview keeps it alive. */
static PyObject *
scratch_of(FlTLS *self)
{
    if (self->scratch != NULL) {
        return self->scratch;
    }
    PyObject *loop = or_none(self->loop);
    PyObject *buf = PyObject_GetAttr(loop, str_scratch);
    if (buf == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
        buf = PyByteArray_FromStringAndSize(NULL, SCRATCH_SIZE);
        if (buf == NULL) {
            return NULL;
        }
        memset(PyByteArray_AS_STRING(buf), 0, SCRATCH_SIZE);
        /* A loop that takes no attributes: this connection keeps its own. */
        if (PyObject_SetAttr(loop, str_scratch, buf) < 0) {
            PyErr_Clear();
        }
    }
    if (!PyByteArray_CheckExact(buf) || PyByteArray_GET_SIZE(buf) < DIRECT_MAX) {
        Py_DECREF(buf);
        PyErr_SetString(PyExc_TypeError,
                        "the loop's _fl_tls_scratch must be a bytearray");
        return NULL;
    }
    self->scratch = buf;
    return buf;
}

/* ---- flow control ---- */

/* size >= mark (ge) or size <= mark: with the marks as Python compares
   them when one is not a plain int. -1 with an error. */
static int
mark_cmp(FlTLS *self, Py_ssize_t size, int mark, int ge)
{
    if (self->marks_exact) {
        return ge ? size >= self->mark_v[mark] : size <= self->mark_v[mark];
    }
    if (self->marks[mark] == NULL) {
        PyErr_SetString(PyExc_AttributeError, "water mark not set");
        return -1;
    }
    PyObject *v = PyLong_FromSsize_t(size);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_RichCompareBool(v, self->marks[mark], ge ? Py_GE : Py_LE);
    Py_DECREF(v);
    return r;
}

/* asyncio's `if size >= high and not paused: <pause> elif size <= low
   and paused: <resume>`, both comparisons made as asyncio makes them. */
enum { MARKS_KEEP, MARKS_PAUSE, MARKS_RESUME };

static int
marks_decide(FlTLS *self, Py_ssize_t size, int high, int low, char paused)
{
    int over = mark_cmp(self, size, high, 1);
    if (over < 0) {
        return -1;
    }
    if (over && !paused) {
        return MARKS_PAUSE;
    }
    int under = mark_cmp(self, size, low, 0);
    if (under < 0) {
        return -1;
    }
    return under && paused ? MARKS_RESUME : MARKS_KEEP;
}

/* The app protocol's pause_writing()/resume_writing(): a failure is
   reported, as asyncio's _control_app_writing does. */
static int
call_app_writing(FlTLS *self, PyObject *name, const char *message)
{
    PyObject *proto = Py_NewRef(or_none(self->app_protocol));
    PyObject *r = fl_call_method0(proto, name);
    Py_DECREF(proto);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    PyObject *exc = fl_err_take_nonfatal();
    if (exc == NULL) {
        return -1;
    }
    PyObject *app_transport = PyObject_GetAttr((PyObject *)self, str_app_transport);
    if (app_transport == NULL) {
        Py_DECREF(exc);
        return -1;
    }
    int rc = fl_transport_call_helper("_report_callback_error", Py_BuildValue(
        "(OsOOO)", or_none(self->loop), message, exc,
        app_transport, (PyObject *)self));
    Py_DECREF(app_transport);
    Py_DECREF(exc);
    return rc;
}

/* asyncio's _control_app_writing; out_pending: the outgoing BIO's
   pending count if known (-1: ask it). */
static int
control_app_writing(FlTLS *self, Py_ssize_t out_pending)
{
    if (out_pending < 0) {
        out_pending = bio_pending_of(self->outgoing);
        if (out_pending < 0 && PyErr_Occurred()) {
            return -1;
        }
    }
    Py_ssize_t size = out_pending + self->write_buffer_size;
    switch (marks_decide(self, size, OUT_HIGH, OUT_LOW, self->app_writing_paused)) {
    case MARKS_PAUSE:
        self->app_writing_paused = 1;
        return call_app_writing(self, str_pause_writing,
                                "protocol.pause_writing() failed");
    case MARKS_RESUME:
        self->app_writing_paused = 0;
        return call_app_writing(self, str_resume_writing,
                                "protocol.resume_writing() failed");
    case MARKS_KEEP:
        return 0;
    default:
        return -1;
    }
}

/* asyncio's _control_ssl_reading; in_pending as out_pending above. */
static int
control_ssl_reading(FlTLS *self, Py_ssize_t in_pending)
{
    if (in_pending < 0) {
        in_pending = bio_pending_of(self->incoming);
        if (in_pending < 0 && PyErr_Occurred()) {
            return -1;
        }
    }
    PyObject *name;
    switch (marks_decide(self, in_pending, IN_HIGH, IN_LOW, self->ssl_reading_paused)) {
    case MARKS_PAUSE:
        self->ssl_reading_paused = 1;
        name = str_pause_reading;
        break;
    case MARKS_RESUME:
        self->ssl_reading_paused = 0;
        name = str_resume_reading;
        break;
    case MARKS_KEEP:
        return 0;
    default:
        return -1;
    }
    PyObject *transport = Py_NewRef(or_none(self->transport));
    PyObject *r = fl_call_method0(transport, name);
    Py_DECREF(transport);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* ---- outgoing ---- */

/* asyncio's _process_outgoing: the ciphertext to the stream transport. */
static int
process_outgoing(FlTLS *self)
{
    Py_ssize_t out_pending = -1;
    if (!self->ssl_writing_paused) {
        PyObject *outgoing = Py_NewRef(or_none(self->outgoing));
        PyObject *data = bio_call(outgoing, bio_read, str_read, NULL);
        Py_DECREF(outgoing);
        if (data == NULL) {
            return -1;
        }
        Py_ssize_t len = PyBytes_CheckExact(data) ? PyBytes_GET_SIZE(data)
                                                  : PyObject_Size(data);
        if (len < 0) {
            Py_DECREF(data);
            return -1;
        }
        if (len > 0) {
            PyObject *transport = Py_NewRef(or_none(self->transport));
            PyObject *r = fl_stream_check_exact(transport)
                ? fl_stream_write(transport, data)
                : fl_call_method1(transport, str_write, data);
            Py_DECREF(transport);
            Py_XDECREF(r);
            if (r == NULL) {
                Py_DECREF(data);
                return -1;
            }
        }
        Py_DECREF(data);
        /* read() took it all; a transport other than ours may have run
           Python code that wrote more: ask then. */
        if (len == 0 || fl_stream_check_exact(or_none(self->transport))) {
            out_pending = 0;
        }
    }
    return control_app_writing(self, out_pending);
}

static int
backlog_nonempty(FlTLS *self)
{
    if (self->write_backlog == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_write_backlog");
        return -1;
    }
    return PyObject_IsTrue(self->write_backlog);
}

/* asyncio's _do_write: encrypt the backlog, then _process_outgoing. */
static int
do_write(FlTLS *self)
{
    PyObject *backlog = Py_NewRef(or_none(self->write_backlog));
    int rc = -1;
    for (;;) {
        int more = PyObject_IsTrue(backlog);
        if (more < 0) {
            goto done;
        }
        if (!more) {
            break;
        }
        PyObject *data = PySequence_GetItem(backlog, 0);
        if (data == NULL) {
            goto done;
        }
        Py_ssize_t count = ssl_write(self, data);
        if (count == AGAIN) {
            Py_DECREF(data);
            break;
        }
        Py_ssize_t data_len = count < 0 ? -1 : PyObject_Size(data);
        if (data_len < 0) {
            Py_DECREF(data);
            goto done;
        }
        int r;
        if (count < data_len) {
            PyObject *rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
            r = rest ? PySequence_SetItem(backlog, 0, rest) : -1;
            Py_XDECREF(rest);
            self->write_buffer_size -= r < 0 ? 0 : count;
        }
        else {
            r = PySequence_DelItem(backlog, 0);
            self->write_buffer_size -= r < 0 ? 0 : data_len;
        }
        Py_DECREF(data);
        if (r < 0) {
            goto done;
        }
    }
    rc = process_outgoing(self);
done:
    Py_DECREF(backlog);
    return rc;
}

static int
state_is_closed_for_writes(FlTLS *self)
{
    return self->state_code == ST_FLUSHING || self->state_code == ST_SHUTDOWN
        || self->state_code == ST_UNWRAPPED;
}

/* A write once the connection is closing: counted, dropped, and logged
   past asyncio's threshold. */
static int
write_dropped(FlTLS *self)
{
    if (self->conn_lost >= log_threshold) {
        if (fl_log("warning", Py_BuildValue("(s)", "SSL connection is closed"),
                   NULL) < 0) {
            return -1;
        }
    }
    self->conn_lost++;
    return 0;
}

static int
backlog_append(FlTLS *self, PyObject *data, Py_ssize_t len)
{
    PyObject *backlog = Py_NewRef(or_none(self->write_backlog));
    PyObject *r = fl_call_method1(backlog, str_append, data);
    Py_DECREF(backlog);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    self->write_buffer_size += len;
    return 0;
}

/* asyncio's _write_appdata(list_of_data). */
static int
write_appdata(FlTLS *self, PyObject *list_of_data)
{
    if (state_is_closed_for_writes(self)) {
        return write_dropped(self);
    }
    PyObject *it = PyObject_GetIter(list_of_data);
    if (it == NULL) {
        return -1;
    }
    PyObject *data;
    while ((data = PyIter_Next(it)) != NULL) {
        /* appended, then measured: an item without a len() stays queued
           when its TypeError propagates, as in asyncio */
        int r = backlog_append(self, data, 0);
        Py_ssize_t len = r < 0 ? -1 : PyObject_Size(data);
        r = len < 0 ? -1 : 0;
        self->write_buffer_size += len < 0 ? 0 : len;
        Py_DECREF(data);
        if (r < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (self->state_code == ST_WRAPPED && do_write(self) < 0) {
        return fatal_on_exception(self, "Fatal error on SSL protocol");
    }
    return 0;
}

/* write(data) of one bytes or bytearray, the usual case: straight into
   SSLObject.write when nothing waits before it. The backlog and its size
   end as asyncio's _write_appdata((data,)) leaves them. */
static int
write_one(FlTLS *self, PyObject *data)
{
    if (state_is_closed_for_writes(self)) {
        return write_dropped(self);
    }
    if (self->state_code != ST_WRAPPED
            || !(PyBytes_CheckExact(data) || PyByteArray_CheckExact(data))) {
        PyObject *one = PyTuple_Pack(1, data);
        if (one == NULL) {
            return -1;
        }
        int r = write_appdata(self, one);
        Py_DECREF(one);
        return r;
    }
    int queued = backlog_nonempty(self);
    if (queued < 0) {
        return -1;
    }
    Py_ssize_t len = Py_SIZE(data);
    if (queued) {
        if (backlog_append(self, data, len) < 0) {
            return -1;
        }
        goto write_backlog;
    }
    Py_ssize_t count = ssl_write(self, data);
    if (count == len) {
        if (process_outgoing(self) < 0) {
            return fatal_on_exception(self, "Fatal error on SSL protocol");
        }
        return 0;
    }
    if (count == -1) {
        /* asyncio had queued it before the write failed. */
        PyObject *exc = fl_err_get_raised();
        if (backlog_append(self, data, len) < 0) {
            Py_DECREF(exc);
            return -1;
        }
        fl_err_set_raised(exc);
        return fatal_on_exception(self, "Fatal error on SSL protocol");
    }
    if (count == AGAIN) {
        if (backlog_append(self, data, len) < 0) {
            return -1;
        }
        if (process_outgoing(self) < 0) {
            return fatal_on_exception(self, "Fatal error on SSL protocol");
        }
        return 0;
    }
    {
        /* Part of it: the rest waits first in line, as in asyncio. */
        PyObject *rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
        if (rest == NULL) {
            return -1;
        }
        int r = backlog_append(self, rest, len - count);
        Py_DECREF(rest);
        if (r < 0) {
            return -1;
        }
    }
write_backlog:
    if (do_write(self) < 0) {
        return fatal_on_exception(self, "Fatal error on SSL protocol");
    }
    return 0;
}

/* ---- incoming ---- */

/* The ciphertext just fed may hold no complete record that the SSL
   object has not consumed: then read() would only raise SSLWantReadError
   (an exception object, its message, its attributes). After a read that
   returned less than asked (the record it came from is exhausted), an
   empty incoming BIO means exactly that. */
static int
nothing_more(FlTLS *self, Py_ssize_t got, Py_ssize_t asked)
{
    if (got >= asked) {
        return 0;
    }
    Py_ssize_t pending = bio_pending_of(self->incoming);
    if (pending < 0) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return pending == 0;
}

/* close_notify: asyncio's _call_eof_received(), then _start_shutdown(). */
static int
on_close_notify(FlTLS *self)
{
    if (run_self(self, str_call_eof_received) < 0) {
        return -1;
    }
    return run_self(self, str_start_shutdown);
}

/* The buffer is full and more may wait: loop.call_soon(self._do_read),
   as asyncio's buffered read does. */
static int
read_again_soon(FlTLS *self)
{
    PyObject *loop = Py_NewRef(or_none(self->loop));
    PyObject *again = PyObject_GetAttr((PyObject *)self, str_do_read);
    PyObject *h = again ? fl_call_method1(loop, str_call_soon, again) : NULL;
    Py_DECREF(loop);
    Py_XDECREF(again);
    Py_XDECREF(h);
    return h ? 0 : -1;
}

/* data_received(<ptr[:n]>): `owned` is a bytes object the data was read
   into (trimmed here and handed on), or NULL for a copy. */
static int
deliver(FlTLS *self, PyObject *owned, const char *ptr, Py_ssize_t n)
{
    PyObject *data = owned;
    if (data == NULL) {
        data = PyBytes_FromStringAndSize(ptr, n);
        if (data == NULL) {
            return -1;
        }
    }
    else if (n < PyBytes_GET_SIZE(data) && _PyBytes_Resize(&data, n) < 0) {
        return -1;
    }
    PyObject *proto = Py_NewRef(or_none(self->app_protocol));
    PyObject *r = fl_call_method1(proto, str_data_received, data);
    Py_DECREF(proto);
    Py_DECREF(data);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* asyncio's _do_read__copied: every record's plaintext, joined, to
   data_received(). It goes into the loop's scratch buffer and is copied
   out once, or, when the incoming BIO holds a large batch, straight into
   the bytes object data_received() gets. When that fills up it is handed
   on and the rest read on the next pass (call_soon(_do_read)), as the
   buffered path does. */
static int
read_copied(FlTLS *self)
{
    Py_ssize_t pending = bio_pending_of(self->incoming);
    if (pending < 0 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *owned = NULL, *target;
    char *base;
    Py_ssize_t cap;
    if (pending >= DIRECT_MIN) {
        cap = pending < DIRECT_MAX ? pending : DIRECT_MAX;
        owned = PyBytes_FromStringAndSize(NULL, cap);
        if (owned == NULL) {
            return -1;
        }
        base = PyBytes_AS_STRING(owned);
        target = NULL;
    }
    else {
        target = scratch_of(self);
        if (target == NULL) {
            return -1;
        }
        base = PyByteArray_AS_STRING(target);
        cap = PyByteArray_GET_SIZE(target);
    }
    /* The scratch must not move while we read into it. */
    Py_buffer hold = {0};
    if (target != NULL && PyObject_GetBuffer(target, &hold, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    Py_ssize_t off = 0, count = 1;
    int full = 0;
    for (;;) {
        Py_ssize_t want = cap - off;
        count = (off == 0 && target != NULL) ? ssl_read_into(self, target, want)
                                             : ssl_read_at(self, base + off, want);
        if (count == AGAIN) {
            count = 1;
            break;
        }
        if (count < 0) {
            goto error;
        }
        if (count == 0) {
            break;          /* close_notify */
        }
        off += count;
        if (off >= cap) {
            full = 1;
            break;
        }
        int done = nothing_more(self, count, want);
        if (done < 0) {
            goto error;
        }
        if (done) {
            break;
        }
    }
    if (target != NULL) {
        PyBuffer_Release(&hold);
    }
    if (off > 0) {
        int r = deliver(self, owned, base, off);
        owned = NULL;
        if (r < 0) {
            return -1;
        }
    }
    Py_XDECREF(owned);
    if (full && read_again_soon(self) < 0) {
        return -1;
    }
    if (count == 0) {
        return on_close_notify(self);
    }
    return 0;
error:
    if (target != NULL) {
        PyBuffer_Release(&hold);
    }
    Py_XDECREF(owned);
    return -1;
}

/* asyncio's _do_read__buffered: the plaintext straight into the app
   protocol's buffer. (asyncio reads the rest of the buffer into
   buf[offset:], which for a bytearray is a copy, losing those bytes; here
   it goes into the buffer itself.) */
static int
read_buffered(FlTLS *self)
{
    Py_ssize_t pending = bio_pending_of(self->incoming);
    if (pending < 0 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *hint = PyLong_FromSsize_t(pending);
    if (hint == NULL) {
        return -1;
    }
    PyObject *get_buffer = Py_NewRef(or_none(self->app_get_buffer));
    PyObject *buf = PyObject_CallOneArg(get_buffer, hint);
    Py_DECREF(get_buffer);
    Py_DECREF(hint);
    if (buf == NULL) {
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
        Py_DECREF(buf);
        return -1;
    }
    Py_ssize_t wants = view.len, offset = 0;
    int full = 0;
    Py_ssize_t count = ssl_read_into(self, buf, wants);
    if (count == AGAIN) {
        count = 1;
    }
    else if (count < 0) {
        goto error;
    }
    else if (count > 0) {
        offset = count;
        Py_ssize_t asked = wants;
        for (;;) {
            if (offset >= wants) {
                full = 1;
                break;
            }
            int done = nothing_more(self, count, asked);
            if (done < 0) {
                goto error;
            }
            if (done) {
                break;
            }
            asked = wants - offset;
            count = ssl_read_at(self, (char *)view.buf + offset, asked);
            if (count == AGAIN) {
                count = 1;
                break;
            }
            if (count < 0) {
                goto error;
            }
            if (count == 0) {
                break;
            }
            offset += count;
        }
    }
    PyBuffer_Release(&view);
    Py_DECREF(buf);
    if (full && read_again_soon(self) < 0) {
        return -1;
    }
    if (offset > 0) {
        PyObject *n = PyLong_FromSsize_t(offset);
        if (n == NULL) {
            return -1;
        }
        PyObject *updated = Py_NewRef(or_none(self->app_buffer_updated));
        PyObject *r = PyObject_CallOneArg(updated, n);
        Py_DECREF(updated);
        Py_DECREF(n);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    if (count == 0) {
        return on_close_notify(self);
    }
    return 0;
error:
    PyBuffer_Release(&view);
    Py_DECREF(buf);
    return -1;
}

/* asyncio's _do_read: 0, or -1 with an error that must propagate (an
   Exception went to _fatal_error). */
static int
do_read(FlTLS *self)
{
    if (self->state_code != ST_WRAPPED && self->state_code != ST_FLUSHING) {
        return 0;
    }
    Py_INCREF(self);
    int rc = 0;
    if (!self->app_reading_paused) {
        rc = self->app_is_buffer ? read_buffered(self) : read_copied(self);
        if (rc == 0) {
            int queued = backlog_nonempty(self);
            rc = queued < 0 ? -1 : queued ? do_write(self) : process_outgoing(self);
        }
    }
    if (rc == 0) {
        rc = control_ssl_reading(self, -1);
    }
    if (rc < 0) {
        rc = fatal_on_exception(self, "Fatal error on SSL protocol");
    }
    Py_DECREF(self);
    return rc;
}

/* What buffer_updated() does once the ciphertext is in the incoming BIO:
   the state decides, as in asyncio; only the wrapped state's read is
   ours. */
static int
after_feed(FlTLS *self)
{
    switch (self->state_code) {
    case ST_DO_HANDSHAKE:
        return run_self(self, str_do_handshake);
    case ST_WRAPPED:
        return do_read(self);
    case ST_FLUSHING:
        return run_self(self, str_do_flush);
    case ST_SHUTDOWN:
        return run_self(self, str_do_shutdown);
    default:
        return 0;
    }
}

/* buffer_updated(n): incoming.write(scratch[:n]) (n as slicing has it),
   then what the state asks for. The ciphertext was received into the
   loop's scratch, not a buffer of the process: making the memoryview may
   run the cyclic GC, whose finalizers may let another thread (and its
   loop) in before the bytes are in the BIO. */
static int
feed(FlTLS *self, Py_ssize_t n)
{
    PyObject *scratch = scratch_of(self);
    if (scratch == NULL) {
        return -1;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(scratch);
    if (n < 0) {
        n = n + size < 0 ? 0 : n + size;
    }
    if (n > size) {
        n = size;
    }
    /* Held, so that nothing resizes it under the memoryview. */
    Py_buffer hold;
    if (PyObject_GetBuffer(scratch, &hold, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    PyObject *view = PyMemoryView_FromMemory(hold.buf, n, PyBUF_READ);
    PyObject *r = NULL;
    if (view != NULL) {
        PyObject *incoming = Py_NewRef(or_none(self->incoming));
        r = bio_call(incoming, bio_write, str_write, view);
        Py_DECREF(incoming);
        Py_DECREF(view);
    }
    PyBuffer_Release(&hold);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    Py_INCREF(self);
    int rc = after_feed(self);
    Py_DECREF(self);
    return rc;
}

/* The stream transport's C entries (fl_stream_direct_protocol): it
   receives into the loop's scratch buffer, then feeds what it got. */
static char *
direct_get_buffer(PyObject *op, Py_ssize_t *len)
{
    PyObject *scratch = scratch_of((FlTLS *)op);
    if (scratch == NULL) {
        return NULL;
    }
    *len = PyByteArray_GET_SIZE(scratch);
    return PyByteArray_AS_STRING(scratch);
}

static int
direct_buffer_updated(PyObject *op, Py_ssize_t n)
{
    return feed((FlTLS *)op, n);
}

/* Does the stream transport hand this protocol its bytes in C? Only if
   get_buffer/buffer_updated are ours (a subclass may override them). */
static int
accepts(PyObject *protocol)
{
    if (!PyObject_TypeCheck(protocol, tls_type)) {
        return 0;
    }
    PyObject *type = (PyObject *)Py_TYPE(protocol);
    PyObject *g = PyObject_GetAttr(type, str_get_buffer);
    PyObject *b = g ? PyObject_GetAttr(type, str_buffer_updated) : NULL;
    int ours = g == get_buffer_descr && b == buffer_updated_descr;
    Py_XDECREF(g);
    Py_XDECREF(b);
    if (b == NULL) {
        return -1;
    }
    if (ours && ssl_init() < 0) {
        return -1;
    }
    return ours;
}

static const fl_stream_direct_protocol direct_impl = {
    .accepts = accepts,
    .get_buffer = direct_get_buffer,
    .buffer_updated = direct_buffer_updated,
};

/* ---- TLSProtocol's methods ---- */

#define TLS(o) ((FlTLS *)(o))

static PyObject *
none_or_null(int rc)
{
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tls_get_buffer(PyObject *self, PyObject *n)
{
    /* asyncio ignores the size hint beyond choosing its buffer's size; the
       scratch is always the largest. */
    PyObject *scratch = scratch_of(TLS(self));
    return scratch ? PyMemoryView_FromObject(scratch) : NULL;
}

static PyObject *
tls_buffer_updated(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if ((n == -1 && PyErr_Occurred()) || ssl_init() < 0) {
        return NULL;
    }
    return none_or_null(feed(TLS(self), n));
}

static PyObject *
tls_do_read(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ssl_init() < 0) {
        return NULL;
    }
    return none_or_null(do_read(TLS(self)));
}

/* A method that is one step of the C path: the ssl module's entry points
   loaded first, and the protocol kept alive across the step (the app's
   callbacks may drop every other reference to it). */
static PyObject *
run_step(PyObject *self, int (*step)(FlTLS *))
{
    if (ssl_init() < 0) {
        return NULL;
    }
    Py_INCREF(self);
    int rc = step(TLS(self));
    Py_DECREF(self);
    return none_or_null(rc);
}

/* asyncio's _do_read__copied/_do_read__buffered, for whoever calls them
   (our _do_read does not): so that no Python method of asyncio's reads
   max_size, which our subclass sets to 0. Errors propagate, as there. */
static PyObject *
tls_do_read_copied(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return run_step(self, read_copied);
}

static PyObject *
tls_do_read_buffered(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return run_step(self, read_buffered);
}

static PyObject *
tls_do_write(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return run_step(self, do_write);
}

static PyObject *
tls_process_outgoing(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return run_step(self, process_outgoing);
}

/* The water-mark checks as asyncio's methods make them, with the pending
   sizes read afresh (-1). */
static int
control_app_writing_now(FlTLS *self)
{
    return control_app_writing(self, -1);
}

static int
control_ssl_reading_now(FlTLS *self)
{
    return control_ssl_reading(self, -1);
}

static PyObject *
tls_control_app_writing(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return run_step(self, control_app_writing_now);
}

static PyObject *
tls_control_ssl_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return run_step(self, control_ssl_reading_now);
}

static PyObject *
tls_write_appdata(PyObject *self, PyObject *list_of_data)
{
    if (ssl_init() < 0) {
        return NULL;
    }
    Py_INCREF(self);
    int rc = write_appdata(TLS(self), list_of_data);
    Py_DECREF(self);
    return none_or_null(rc);
}

static PyObject *
tls_get_write_buffer_size(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ssl_init() < 0) {
        return NULL;
    }
    Py_ssize_t n = bio_pending_of(TLS(self)->outgoing);
    if (n < 0 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromSsize_t(n + TLS(self)->write_buffer_size);
}

static PyObject *
tls_get_read_buffer_size(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ssl_init() < 0) {
        return NULL;
    }
    Py_ssize_t n = bio_pending_of(TLS(self)->incoming);
    if (n < 0 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

/* ---- TLSProtocol's attributes ---- */

static PyObject *
get_state(PyObject *self, void *c)
{
    PyObject *v = TLS(self)->state;
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_state");
        return NULL;
    }
    return Py_NewRef(v);
}

static int
set_state(PyObject *self, PyObject *v, void *c)
{
    FlTLS *t = TLS(self);
    int code = ST_UNKNOWN;
    for (int i = ST_UNKNOWN + 1; v != NULL && i < ST_N; i++) {
        if (v == state_members[i]) {
            code = i;
        }
    }
    Py_XSETREF(t->state, Py_XNewRef(v));
    t->state_code = code;
    return 0;
}

static PyObject *
get_sslobj(PyObject *self, void *c)
{
    PyObject *v = TLS(self)->sslobj;
    return Py_NewRef(v ? v : Py_None);
}

static int
set_sslobj(PyObject *self, PyObject *v, void *c)
{
    Py_XSETREF(TLS(self)->sslobj, Py_XNewRef(v));
    Py_CLEAR(TLS(self)->c_sslobj);
    return 0;
}

static PyObject *
get_mark(PyObject *self, void *c)
{
    PyObject *v = TLS(self)->marks[(Py_ssize_t)c];
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "water mark not set");
        return NULL;
    }
    return Py_NewRef(v);
}

static int
set_mark(PyObject *self, PyObject *v, void *c)
{
    FlTLS *t = TLS(self);
    Py_ssize_t i = (Py_ssize_t)c;
    Py_XSETREF(t->marks[i], Py_XNewRef(v));
    t->marks_exact = 1;
    for (int m = 0; m < N_MARKS; m++) {
        PyObject *mv = t->marks[m];
        int overflow = 0;
        long long x = mv && PyLong_CheckExact(mv)
            ? PyLong_AsLongLongAndOverflow(mv, &overflow) : 0;
        if (mv == NULL || !PyLong_CheckExact(mv) || overflow
                || x > PY_SSIZE_T_MAX || x < PY_SSIZE_T_MIN) {
            t->marks_exact = 0;
            PyErr_Clear();
            break;
        }
        t->mark_v[m] = (Py_ssize_t)x;
    }
    return 0;
}

static int
tls_traverse(PyObject *self, visitproc visit, void *arg)
{
    FlTLS *t = TLS(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(t->state);
    Py_VISIT(t->loop);
    Py_VISIT(t->app_protocol);
    Py_VISIT(t->app_get_buffer);
    Py_VISIT(t->app_buffer_updated);
    Py_VISIT(t->transport);
    Py_VISIT(t->sslobj);
    Py_VISIT(t->incoming);
    Py_VISIT(t->outgoing);
    Py_VISIT(t->write_backlog);
    for (int i = 0; i < N_MARKS; i++) {
        Py_VISIT(t->marks[i]);
    }
    Py_VISIT(t->c_sslobj);
    Py_VISIT(t->scratch);
    return 0;
}

static int
tls_clear(PyObject *self)
{
    FlTLS *t = TLS(self);
    Py_CLEAR(t->state);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->app_protocol);
    Py_CLEAR(t->app_get_buffer);
    Py_CLEAR(t->app_buffer_updated);
    Py_CLEAR(t->transport);
    Py_CLEAR(t->sslobj);
    Py_CLEAR(t->incoming);
    Py_CLEAR(t->outgoing);
    Py_CLEAR(t->write_backlog);
    for (int i = 0; i < N_MARKS; i++) {
        Py_CLEAR(t->marks[i]);
    }
    Py_CLEAR(t->c_sslobj);
    Py_CLEAR(t->scratch);
    return 0;
}

static void
tls_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tls_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef tls_methods[] = {
    {"get_buffer", tls_get_buffer, METH_O, NULL},
    {"buffer_updated", tls_buffer_updated, METH_O, NULL},
    {"_do_read", tls_do_read, METH_NOARGS, NULL},
    {"_do_read__copied", tls_do_read_copied, METH_NOARGS, NULL},
    {"_do_read__buffered", tls_do_read_buffered, METH_NOARGS, NULL},
    {"_do_write", tls_do_write, METH_NOARGS, NULL},
    {"_process_outgoing", tls_process_outgoing, METH_NOARGS, NULL},
    {"_write_appdata", tls_write_appdata, METH_O, NULL},
    {"_control_app_writing", tls_control_app_writing, METH_NOARGS, NULL},
    {"_control_ssl_reading", tls_control_ssl_reading, METH_NOARGS, NULL},
    {"_get_write_buffer_size", tls_get_write_buffer_size, METH_NOARGS, NULL},
    {"_get_read_buffer_size", tls_get_read_buffer_size, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* asyncio's own attribute names; settable, as asyncio's code sets them. */
#define TLS_FIELD(name, type, field) {name, type, offsetof(FlTLS, field), 0, NULL}

static PyMemberDef tls_members[] = {
    TLS_FIELD("_loop", T_OBJECT, loop),
    TLS_FIELD("_app_protocol", T_OBJECT, app_protocol),
    TLS_FIELD("_app_protocol_get_buffer", T_OBJECT, app_get_buffer),
    TLS_FIELD("_app_protocol_buffer_updated", T_OBJECT, app_buffer_updated),
    TLS_FIELD("_app_protocol_is_buffer", T_BOOL, app_is_buffer),
    TLS_FIELD("_transport", T_OBJECT, transport),
    TLS_FIELD("_incoming", T_OBJECT, incoming),
    TLS_FIELD("_outgoing", T_OBJECT, outgoing),
    TLS_FIELD("_write_backlog", T_OBJECT, write_backlog),
    TLS_FIELD("_write_buffer_size", T_PYSSIZET, write_buffer_size),
    TLS_FIELD("_conn_lost", T_PYSSIZET, conn_lost),
    TLS_FIELD("_app_reading_paused", T_BOOL, app_reading_paused),
    TLS_FIELD("_ssl_reading_paused", T_BOOL, ssl_reading_paused),
    TLS_FIELD("_ssl_writing_paused", T_BOOL, ssl_writing_paused),
    TLS_FIELD("_app_writing_paused", T_BOOL, app_writing_paused),
    TLS_FIELD("_eof_received", T_BOOL, eof_received),
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef tls_getset[] = {
    {"_state", get_state, set_state, NULL, NULL},
    {"_sslobj", get_sslobj, set_sslobj, NULL, NULL},
    {"_outgoing_high_water", get_mark, set_mark, NULL, (void *)OUT_HIGH},
    {"_outgoing_low_water", get_mark, set_mark, NULL, (void *)OUT_LOW},
    {"_incoming_high_water", get_mark, set_mark, NULL, (void *)IN_HIGH},
    {"_incoming_low_water", get_mark, set_mark, NULL, (void *)IN_LOW},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot tls_slots[] = {
    {Py_tp_dealloc, tls_dealloc},
    {Py_tp_traverse, tls_traverse},
    {Py_tp_clear, tls_clear},
    {Py_tp_methods, tls_methods},
    {Py_tp_members, tls_members},
    {Py_tp_getset, tls_getset},
    {0, NULL},
};

static PyType_Spec tls_spec = {
    .name = "fastloop.TLSProtocol",
    .basicsize = sizeof(FlTLS),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = tls_slots,
};

/* ---- TLSTransport: the app transport's write side ---- */

/* asyncio's _SSLProtocolTransport.write(data). */
static PyObject *
tt_write(PyObject *self, PyObject *data)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "data: expecting a bytes-like instance, got %U", name);
            Py_DECREF(name);
        }
        return NULL;
    }
    int nonempty = PyObject_IsTrue(data);
    if (nonempty <= 0) {
        return nonempty < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *proto = TT(self)->ssl_protocol;
    if (proto == NULL || !PyObject_TypeCheck(proto, tls_type)) {
        PyObject *one = PyTuple_Pack(1, data);
        if (one == NULL) {
            return NULL;
        }
        PyObject *r = fl_call_method1(proto ? proto : Py_None, str_write_appdata, one);
        Py_DECREF(one);
        return r;
    }
    if (ssl_init() < 0) {
        return NULL;
    }
    Py_INCREF(proto);
    int rc = write_one(TLS(proto), data);
    Py_DECREF(proto);
    return none_or_null(rc);
}

static PyObject *
tt_writelines(PyObject *self, PyObject *list_of_data)
{
    PyObject *proto = TT(self)->ssl_protocol;
    if (proto == NULL || !PyObject_TypeCheck(proto, tls_type)) {
        return fl_call_method1(proto ? proto : Py_None, str_write_appdata,
                               list_of_data);
    }
    if (ssl_init() < 0) {
        return NULL;
    }
    Py_INCREF(proto);
    int rc = write_appdata(TLS(proto), list_of_data);
    Py_DECREF(proto);
    return none_or_null(rc);
}

/* The base's __slots__ (_extra, _loop, ...) come before our fields. */
static int
tt_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (PyObject **p = (PyObject **)((char *)self + sizeof(PyObject));
         (char *)p < (char *)TT(self); p++) {
        Py_VISIT(*p);
    }
    Py_VISIT(TT(self)->ssl_protocol);
    return 0;
}

static int
tt_clear(PyObject *self)
{
    for (PyObject **p = (PyObject **)((char *)self + sizeof(PyObject));
         (char *)p < (char *)TT(self); p++) {
        Py_CLEAR(*p);
    }
    Py_CLEAR(TT(self)->ssl_protocol);
    return 0;
}

static void
tt_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tt_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef tt_methods[] = {
    {"write", tt_write, METH_O, NULL},
    {"writelines", tt_writelines, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef tt_members[] = {
    {"_ssl_protocol", T_OBJECT, offsetof(FlTLSTransport, ssl_protocol), 0, NULL},
    {"_closed", T_BOOL, offsetof(FlTLSTransport, closed), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot tt_slots[] = {
    {Py_tp_dealloc, tt_dealloc},
    {Py_tp_traverse, tt_traverse},
    {Py_tp_clear, tt_clear},
    {Py_tp_methods, tt_methods},
    {Py_tp_members, tt_members},
    {0, NULL},
};

static PyType_Spec tt_spec = {
    .name = "fastloop.TLSTransport",
    .basicsize = 0,             /* set from the base's size at init */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = tt_slots,
};

/* ---- module init ---- */

static int
intern_all(void)
{
    static const fl_name names[] = {
        {&str_read, "read"},
        {&str_write, "write"},
        {&str_pending, "pending"},
        {&str_sslobj_attr, "_sslobj"},
        {&str_data_received, "data_received"},
        {&str_pause_writing, "pause_writing"},
        {&str_resume_writing, "resume_writing"},
        {&str_pause_reading, "pause_reading"},
        {&str_resume_reading, "resume_reading"},
        {&str_fatal_error, "_fatal_error"},
        {&str_call_eof_received, "_call_eof_received"},
        {&str_start_shutdown, "_start_shutdown"},
        {&str_do_read, "_do_read"},
        {&str_do_handshake, "_do_handshake"},
        {&str_do_flush, "_do_flush"},
        {&str_do_shutdown, "_do_shutdown"},
        {&str_call_soon, "call_soon"},
        {&str_append, "append"},
        {&str_write_appdata, "_write_appdata"},
        {&str_app_transport, "_app_transport"},
        {&str_scratch, "_fl_tls_scratch"},
        {&str_get_buffer, "get_buffer"},
        {&str_buffer_updated, "buffer_updated"},
    };
    return fl_intern(names, sizeof(names) / sizeof(names[0]));
}

static int
load_states(void)
{
    static const char *names[ST_N] = {
        NULL, "UNWRAPPED", "DO_HANDSHAKE", "WRAPPED", "FLUSHING", "SHUTDOWN",
    };
    PyObject *states = fl_import_attr("asyncio.sslproto", "SSLProtocolState");
    if (states == NULL) {
        return -1;
    }
    for (int i = ST_UNKNOWN + 1; i < ST_N; i++) {
        state_members[i] = PyObject_GetAttrString(states, names[i]);
        if (state_members[i] == NULL) {
            Py_DECREF(states);
            return -1;
        }
    }
    Py_DECREF(states);
    PyObject *threshold = fl_import_attr("asyncio.constants",
                                         "LOG_THRESHOLD_FOR_CONNLOST_WRITES");
    if (threshold == NULL) {
        return -1;
    }
    log_threshold = PyLong_AsSsize_t(threshold);
    Py_DECREF(threshold);
    return log_threshold == -1 && PyErr_Occurred() ? -1 : 0;
}

int
fl_tls_module_init(PyObject *module)
{
    if (intern_all() < 0 || load_states() < 0) {
        return -1;
    }
    PyObject *t = PyType_FromModuleAndSpec(module, &tls_spec, NULL);
    if (t == NULL) {
        return -1;
    }
    tls_type = (PyTypeObject *)t;
    if (PyModule_AddObjectRef(module, "TLSProtocol", t) < 0) {
        return -1;
    }
    get_buffer_descr = PyObject_GetAttr(t, str_get_buffer);
    buffer_updated_descr = PyObject_GetAttr(t, str_buffer_updated);
    if (get_buffer_descr == NULL || buffer_updated_descr == NULL) {
        return -1;
    }

    /* The transport's fields follow _FlowControlMixin's slots, as the
       stream transport's do. */
    PyObject *base = fl_import_attr("asyncio.transports", "_FlowControlMixin");
    if (base == NULL) {
        return -1;
    }
    PyTypeObject *bt = (PyTypeObject *)base;
    if (!PyType_Check(base) || bt->tp_dictoffset != 0 || bt->tp_itemsize != 0) {
        Py_DECREF(base);
        PyErr_SetString(PyExc_ImportError,
                        "unexpected asyncio.transports class layout");
        return -1;
    }
    Py_ssize_t align = (Py_ssize_t)sizeof(void *);
    transport_offset = (bt->tp_basicsize + align - 1) / align * align;
    tt_spec.basicsize = (int)(transport_offset + sizeof(FlTLSTransport));
    fl_members_at(tt_members, transport_offset);
    PyObject *tt = PyType_FromModuleAndSpec(module, &tt_spec, base);
    Py_DECREF(base);
    if (tt == NULL) {
        return -1;
    }
    tls_transport_type = (PyTypeObject *)tt;
    if (PyModule_AddObjectRef(module, "TLSTransport", tt) < 0) {
        return -1;
    }
    fl_stream_register_direct(&direct_impl);
    return 0;
}
