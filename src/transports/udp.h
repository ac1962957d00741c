/* Datagram transports: what create_datagram_endpoint() returns.

   One transport owns a datagram socket and two ev_io watchers on its fd
   (reading, and writing while datagrams wait in the send buffer). A ready
   fd queues one C entry (no Handle, no allocation) that takes datagrams
   from recvfrom() straight to the protocol's datagram_received(), in
   asyncio's order: after the callbacks already due. sendto() tries the
   system call at once and buffers only what the kernel refused. */
#ifndef FL_UDP_H
#define FL_UDP_H

#include "compat.h"

/* Creates fastloop._core.DatagramTransport (a subclass of asyncio's
   Transport and DatagramTransport) and adds it to the module. */
int fl_udp_module_init(PyObject *module);

#endif /* FL_UDP_H */
