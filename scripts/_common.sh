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

# The CPython 3.10-3.13 interpreters on this machine, one path per line.
# FASTLOOP_PYTHONS (space separated) overrides the search.
find_pythons() {
    if [ -n "${FASTLOOP_PYTHONS:-}" ]; then
        printf '%s\n' $FASTLOOP_PYTHONS
        return
    fi
    local v p seen=""
    for v in 3.10 3.11 3.12 3.13; do
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

# Install the Python packages the tests or benchmarks need, then build the
# extension in place for that interpreter (each version gets its own .so).
prepare_python() {
    local py=$1
    shift
    "$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" setuptools wheel >/dev/null 2>&1 \
        || "$py" -m pip install -q --disable-pip-version-check "$@" setuptools wheel
    (cd "$ROOT" && "$py" setup.py -q build_ext --inplace >/dev/null) || {
        echo "build failed for $py; rerunning to show the errors" >&2
        (cd "$ROOT" && "$py" setup.py build_ext --inplace)
        return 1
    }
}
