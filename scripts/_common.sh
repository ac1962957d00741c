# Shared by scripts/test and scripts/bench: set-up that a fresh Debian machine needs.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ensure_libev() {
    if [ -f /usr/include/ev.h ] || [ -f /usr/local/include/ev.h ]; then
        return 0
    fi
    if command -v apt-get >/dev/null 2>&1; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        echo "== installing libev-dev with apt-get"
        $sudo apt-get update -qq && $sudo apt-get install -y -qq libev-dev >/dev/null
    else
        echo "libev development files are missing; install libev-dev (Debian/Ubuntu)," \
             "libev-devel (Fedora) or libev (Homebrew)" >&2
        return 1
    fi
}

# CPython versions newer than the host's come from a Debian sid chroot made
# by scripts/newer-pythons (see there): `newer-pythons run 3.14 CMD...`.
NEWER_PYTHONS="$ROOT/scripts/newer-pythons"

# Does a FASTLOOP_PYTHONS entry (python3.14 or 3.14) name a chroot version?
# Prints the version if so. FASTLOOP_NO_CHROOT=1: none does.
chroot_version_of() {
    [ "${FASTLOOP_NO_CHROOT:-}" = 1 ] && return 1
    local v=${1#python}
    case " $("$NEWER_PYTHONS" versions | tr '\n' ' ') " in
        *" $v "*) echo "$v" ;;
        *) return 1 ;;
    esac
}

# The CPython 3.11-3.13 interpreters on this machine, one path per line.
# FASTLOOP_PYTHONS (space separated) overrides the search; its entries that
# name a chroot version (find_chroot_pythons) are left out here.
find_pythons() {
    if [ -n "${FASTLOOP_PYTHONS:-}" ]; then
        local p
        for p in $FASTLOOP_PYTHONS; do
            chroot_version_of "$p" >/dev/null || echo "$p"
        done
        return
    fi
    local v p seen=""
    for v in 3.11 3.12 3.13; do
        p=""
        if command -v pyenv >/dev/null 2>&1; then
            local full
            full=$(pyenv versions --bare 2>/dev/null | grep -E "^${v//./\\.}\.[0-9]+$" | sort -V | tail -n 1)
            [ -n "$full" ] && p="$(pyenv root)/versions/$full/bin/python$v"
        fi
        [ -x "$p" ] || p=$(command -v "python$v" 2>/dev/null || true)
        [ -n "$p" ] && [ -x "$p" ] && echo "$p"
    done
}

# The chroot versions to run (3.14, 3.15), one per line: those that
# FASTLOOP_PYTHONS names, or, without it, all that scripts/newer-pythons
# provides; none with FASTLOOP_NO_CHROOT=1.
find_chroot_pythons() {
    [ "${FASTLOOP_NO_CHROOT:-}" = 1 ] && return 0
    if [ -n "${FASTLOOP_PYTHONS:-}" ]; then
        local p
        for p in $FASTLOOP_PYTHONS; do
            chroot_version_of "$p" || true
        done
        return 0
    fi
    "$NEWER_PYTHONS" versions
}

# Build the extension in place (each version gets its own .so) with a
# Python command: `build_inplace python3.12`, or
# `build_inplace scripts/newer-pythons run 3.14 python`.
build_inplace() {
    (cd "$ROOT" && "$@" setup.py -q build_ext --inplace >/dev/null) || {
        echo "build failed for $*; rerunning to show the errors" >&2
        (cd "$ROOT" && "$@" setup.py build_ext --inplace)
        return 1
    }
}

# Install the Python packages the tests or benchmarks need, then build the
# extension in place for that interpreter.
prepare_python() {
    local py=$1
    shift
    "$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" setuptools wheel >/dev/null 2>&1 \
        || "$py" -m pip install -q --disable-pip-version-check "$@" setuptools wheel
    build_inplace "$py"
}
