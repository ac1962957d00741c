/* File descriptors: see fd.h. */
#include "core/fd.h"
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

int
fl_fd_check_open(int fd)
{
    if (!fl_fd_is_open(fd)) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

int
fl_fd_from_fileobj(PyObject *fileobj)
{
    long fd;
    if (PyLong_Check(fileobj)) {
        fd = PyLong_AsLong(fileobj);
    }
    else {
        PyObject *res = PyObject_CallMethod(fileobj, "fileno", NULL);
        if (res == NULL || !PyLong_Check(res)) {
            if (res == NULL && !PyErr_ExceptionMatches(PyExc_AttributeError)
                    && !PyErr_ExceptionMatches(PyExc_TypeError)
                    && !PyErr_ExceptionMatches(PyExc_ValueError)) {
                return -1;
            }
            Py_XDECREF(res);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "Invalid file object: %R", fileobj);
            return -1;
        }
        fd = PyLong_AsLong(res);
        Py_DECREF(res);
    }
    return fl_fd_from_long(fd);
}

int
fl_fd_from_long(long fd)
{
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -1;
    }
    return (int)fd;
}

int
fl_fd_watch_errno(int fd)
{
    if (!fl_fd_is_open(fd)) {
        return errno;
    }
#ifdef __linux__
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        return errno;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    int err = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? errno : EIO;
    close(ep);
    return err == EPERM ? EIO : err;
#else
    return EIO;
#endif
}

