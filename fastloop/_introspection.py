"""CPython 3.14+: let asyncio's introspection see fastloop's tasks.

From 3.14 on, ``asyncio.all_tasks()``, ``current_task()``, the call graph
(``asyncio.capture_call_graph``) and ``python -m asyncio ps``/``pstree``
read a few fields of asyncio's own Task struct and of the thread state.
CPython publishes their offsets for external tools in an ELF section named
``.AsyncioDebug`` (``Py_AsyncioModuleDebugOffsets``): in the ``_asyncio``
extension file on 3.14, in the interpreter or libpython where ``_asyncio``
is built in. fastloop reads them here, at import, and ``_core`` checks them
against an asyncio Task set up for the purpose before it uses them (see
src/futures/introspect.h). Nothing is hard-coded: where the section cannot be
found or the check fails, fastloop warns once and runs without them:
``current_task()`` still works, but ``all_tasks()``, the call graph and
``asyncio ps`` do not see fastloop's tasks.
"""
import os
import struct
import sys
import warnings

SECTION = b".AsyncioDebug"
# Py_AsyncioModuleDebugOffsets: Task (size, name, awaited_by, is_task,
# awaited_by_is_set, coro, node), interpreter state (size, tasks_head),
# thread state (size, running_loop, running_task, tasks_head).
N_OFFSETS = 13


def _elf_section(path, name):
    """The bytes of section `name` in the 64-bit little-endian ELF file at
    `path`, or None."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 \
                    or header[5] != 1:
                return None
            shoff, = struct.unpack_from("<Q", header, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
            if shoff == 0 or shentsize < 64 or shnum == 0 or shstrndx >= shnum:
                return None
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            if len(table) < shentsize * shnum:
                return None

            def section(i):
                # sh_name, sh_type, ..., sh_offset, sh_size
                name_off, kind = struct.unpack_from("<II", table, i * shentsize)
                offset, size = struct.unpack_from("<QQ", table, i * shentsize + 0x18)
                return name_off, kind, offset, size

            _, _, str_off, str_size = section(shstrndx)
            f.seek(str_off)
            names = f.read(str_size)
            for i in range(shnum):
                name_off, kind, offset, size = section(i)
                end = names.find(b"\0", name_off)
                if names[name_off:end] == name and kind != 8:  # 8: SHT_NOBITS
                    f.seek(offset)
                    return f.read(size)
    except OSError:
        return None
    return None


def _candidate_files():
    """Where the _asyncio module's code lives: its own file, or (built in)
    the interpreter and the libpython it maps."""
    import _asyncio
    path = getattr(_asyncio, "__file__", None)
    if path:
        yield path
    yield os.path.realpath(sys.executable)
    try:
        with open("/proc/self/maps") as maps:
            mapped = {line.split(None, 5)[5].strip()
                      for line in maps if len(line.split(None, 5)) == 6}
    except OSError:
        return
    for p in sorted(mapped):
        if "libpython" in os.path.basename(p):
            yield p


def published_offsets():
    """Py_AsyncioModuleDebugOffsets of this interpreter, as 13 integers, or
    None when no file carries the section."""
    for path in _candidate_files():
        data = _elf_section(path, SECTION)
        if data is not None and len(data) >= 8 * N_OFFSETS:
            return struct.unpack_from("<%dQ" % N_OFFSETS, data)
    return None


class _ProbeLoop:
    """Just enough of a loop for asyncio.Task() to initialize a probe."""

    def get_debug(self):
        return False

    def call_soon(self, callback, *args, context=None):
        return None

    def call_exception_handler(self, context):
        pass


async def _probe_coro():
    pass


def bind(core):
    """Hands the published offsets to _core, which checks them against an
    asyncio Task, its thread state and its task list, set up right here."""
    import _asyncio
    offsets = published_offsets()
    if offsets is None:
        return "no .AsyncioDebug section was found"
    loop = _ProbeLoop()
    coro = _probe_coro()
    name = "fastloop-probe"
    waiter = _asyncio.Future(loop=loop)
    task = _asyncio.Task(coro, loop=loop, name=name)   # registered, last
    task._log_destroy_pending = False
    saved_loop = _asyncio._get_running_loop()
    _asyncio._set_running_loop(loop)
    try:
        _asyncio.future_add_to_awaited_by(task, waiter)
        saved_task = _asyncio._swap_current_task(loop, task)
        try:
            core._bind_base_fields(offsets, _asyncio.Task, _asyncio.Future,
                                   task, name, coro, waiter, loop)
        finally:
            _asyncio._swap_current_task(loop, saved_task)
            _asyncio.future_discard_from_awaited_by(task, waiter)
    except RuntimeError as exc:
        return str(exc)
    finally:
        _asyncio._set_running_loop(saved_loop)
        _asyncio._unregister_task(task)
        coro.close()
    return None


def setup(core):
    """Binds the fields on 3.14+; warns once when that is not possible."""
    if sys.version_info < (3, 14):
        return
    why = bind(core)
    if why is not None:
        warnings.warn(
            "fastloop: asyncio's introspection offsets are not usable (%s); "
            "asyncio.all_tasks(), the call graph and 'python -m asyncio ps' "
            "will not see fastloop's tasks" % why, RuntimeWarning, stacklevel=3)
