"""Build fastloop._core: one C extension from src/**/*.c linked with the system libev."""
import ast
import glob
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

LIBEV_HINT = """
fastloop needs libev's development files (the header ev.h and -lev), and they
were not found. Install them, then build again:

    Debian/Ubuntu:  apt-get install libev-dev
    Fedora/RHEL:    dnf install libev-devel
    Alpine:         apk add libev-dev
    macOS:          brew install libev
"""


def _read_version():
    """__version__ from fastloop/_version.py, read as text: importing the
    package would need the very extension this script builds."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastloop", "_version.py")
    with open(path, encoding="utf-8") as f:
        module = ast.parse(f.read(), path)
    for node in module.body:
        if (isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["__version__"]):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"no __version__ = '...' line in {path}")


def _include_dirs():
    dirs = [d for d in os.environ.get("LIBEV_INCLUDE", "").split(os.pathsep) if d]
    return dirs + ["/usr/include", "/usr/local/include", "/opt/homebrew/include"]


def _have_ev_h():
    return any(os.path.exists(os.path.join(d, "ev.h")) for d in _include_dirs())


class BuildExt(build_ext):
    """Stop with one clear message when libev is missing, not a compiler traceback."""

    def run(self):
        if not _have_ev_h():
            sys.stderr.write(LIBEV_HINT)
            raise SystemExit("error: libev (ev.h) not found; see the message above")
        super().run()


extra_compile_args = ["-Wall", "-Wextra", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers", "-std=gnu11", "-O2"]
extra_link_args = []
if os.environ.get("FASTLOOP_ASAN"):
    extra_compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_link_args += ["-fsanitize=address"]
if os.environ.get("FASTLOOP_DEBUG"):
    extra_compile_args += ["-O0", "-g", "-UNDEBUG"]

setup(
    version=_read_version(),
    ext_modules=[
        Extension(
            "fastloop._core",
            sources=sorted(glob.glob("src/**/*.c", recursive=True)),
            depends=sorted(glob.glob("src/**/*.h", recursive=True)),
            # src/ itself: every include names its floor ("core/state.h").
            include_dirs=["src"] + [d for d in os.environ.get("LIBEV_INCLUDE", "").split(os.pathsep)
                                    if d],
            libraries=["ev"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
