"""Check an installed fastloop wheel: run by scripts/test-wheels with the
python of a fresh venv, inside a tree that has no libev and no compiler.

It imports fastloop from the venv, runs a small TCP echo on a fastloop loop,
and checks with ldd that fastloop._core loads the libev bundled in the wheel
(fastloop.libs/), not a system one, and that the wheel declares the pytest
plugin's entry point (what `pytest --fastloop` finds). Prints one summary line; exits non-zero
with the reason on any failure.
"""
import asyncio
import os
import subprocess
import sys
import sysconfig


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


async def echo_round_trip(payload):
    async def handle(reader, writer):
        writer.write(await reader.readexactly(len(payload)))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        data = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
    return type(asyncio.get_running_loop()), data


def bundled_libev(core_path, site_packages):
    """The libev that the dynamic loader picks for _core, per ldd."""
    out = subprocess.run(["ldd", core_path], capture_output=True, text=True, check=True).stdout
    if "not found" in out:
        fail(f"ldd finds missing libraries for {core_path}:\n{out}")
    lines = [line.strip() for line in out.splitlines() if "libev" in line]
    if len(lines) != 1:
        fail(f"expected one libev in ldd's output, got:\n{out}")
    # "libev-1a2b3c4d.so.4.0.0 => /venv/lib/.../fastloop.libs/libev-....so.4.0.0 (0x...)"
    resolved = os.path.realpath(lines[0].split("=>")[1].split("(")[0].strip())
    libs_dir = os.path.join(site_packages, "fastloop.libs")
    if os.path.dirname(resolved) != os.path.realpath(libs_dir):
        fail(f"_core loads {resolved}, not the libev bundled in {libs_dir}")
    return resolved


def main():
    site_packages = sysconfig.get_paths()["purelib"]
    if sys.prefix == sys.base_prefix:
        fail("not running in a venv")
    import fastloop
    import fastloop._core

    package_dir = os.path.dirname(fastloop.__file__)
    if os.path.realpath(package_dir) != os.path.realpath(os.path.join(site_packages, "fastloop")):
        fail(f"fastloop imported from {package_dir}, not from the venv's {site_packages}")
    for name in ("py.typed", "__init__.pyi", "_core.pyi"):
        if not os.path.isfile(os.path.join(package_dir, name)):
            fail(f"the installed package lacks {name}")

    loop_type, data = fastloop.run(echo_round_trip(b"fastloop wheel " * 1000))
    if loop_type is not fastloop.Loop or data != b"fastloop wheel " * 1000:
        fail(f"echo on {loop_type} returned {len(data)} bytes")

    libev = bundled_libev(fastloop._core.__file__, site_packages)
    version = subprocess.run([sys.executable, "-m", "fastloop", "--version"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != f"fastloop {fastloop.__version__}":
        fail(f"python -m fastloop --version printed {version!r}")
    from importlib.metadata import entry_points
    plugin = [ep.value for ep in entry_points(group="pytest11") if ep.name == "fastloop"]
    if plugin != ["fastloop.pytest_plugin:flag_plugin"]:
        fail(f"the wheel's pytest11 entry point for fastloop is {plugin}")
    print(f"ok: CPython {sys.version.split()[0]}, {version}, libev "
          "%d.%d" % fastloop._core.libev_version(),
          f"from {os.path.relpath(libev, site_packages)}, TCP echo on fastloop.Loop")


if __name__ == "__main__":
    main()
