/* TLS over a stream transport: the per-record half of asyncio's
   sslproto.SSLProtocol, in C.

   _core.TLSProtocol is the C base of fastloop._tls.SSLProtocol (whose
   other base is asyncio's own sslproto.SSLProtocol), and _core.TLSTransport
   the C base of the application's transport. The hot path (ciphertext in,
   plaintext to the protocol, app writes out, flow control at the water
   marks) is here; handshake, shutdown, timeouts and errors stay asyncio's
   Python code, which reads and writes the same attributes (the hot ones are
   C fields behind asyncio's names). The ssl module's SSLObject over two
   MemoryBIOs is the only TLS implementation. */
#ifndef FL_TLS_H
#define FL_TLS_H

#include "core/state.h"

/* Creates TLSProtocol and TLSTransport and adds them to the module; also
   registers the protocol with the stream transport, which then hands it
   received bytes in C. */
int fl_tls_module_init(PyObject *module);

#endif /* FL_TLS_H */
