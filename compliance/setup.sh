#!/usr/bin/env bash
# Install the Autobahn Testsuite (wstest) into compliance/.venv27, a Python 2.7
# virtualenv. Idempotent: a second run with unchanged requirements does nothing.
#
#   compliance/setup.sh [--force]
#
# Finds Python 2.7 in this order: $PYTHON27, pyenv's versions (2.7.x), then
# python2.7 / python2 on PATH. Exits 3 when none is found (callers may treat that
# as "skip"), 1 on any other failure.
#
# virtualenv 20.22 dropped support for creating Python 2 environments, so the
# venv is made with virtualenv<20.22, taken from (in order):
#   1. a throwaway Python 3 venv, compliance/.venv-tools ($PYTHON3 or python3);
#   2. Python 2.7's own pip, installed with --target into compliance/.venv-tools/py27.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV27="$HERE/.venv27"
TOOLS="$HERE/.venv-tools"
REQS="$HERE/requirements27.txt"
SPEEDUPS="$HERE/requirements27-speedups.txt"
STAMP="$VENV27/.wsskit-setup-stamp"
FORCE=0

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg" >&2; exit 1 ;;
    esac
done

say() { echo "setup.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

is_py27() {
    [ -n "$1" ] && [ -x "$1" ] || return 1
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1
}

find_python27() {
    local cand root
    if [ -n "${PYTHON27:-}" ]; then
        if is_py27 "$PYTHON27"; then echo "$PYTHON27"; return 0; fi
        cand="$(command -v "$PYTHON27" 2>/dev/null || true)"
        if is_py27 "$cand"; then echo "$cand"; return 0; fi
        say "PYTHON27=$PYTHON27 is not a Python 2.7 interpreter; looking elsewhere"
    fi
    # pyenv: its versions directory, newest 2.7.x first (shims may point elsewhere).
    root=""
    if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root 2>/dev/null || true)"; fi
    [ -n "$root" ] || root="${PYENV_ROOT:-$HOME/.pyenv}"
    if [ -d "$root/versions" ]; then
        for cand in $(ls -d "$root"/versions/2.7* 2>/dev/null | sort -rV); do
            if is_py27 "$cand/bin/python2.7"; then echo "$cand/bin/python2.7"; return 0; fi
            if is_py27 "$cand/bin/python"; then echo "$cand/bin/python"; return 0; fi
        done
    fi
    for cand in python2.7 python2 /usr/bin/python2.7 /usr/local/bin/python2.7; do
        cand="$(command -v "$cand" 2>/dev/null || true)"
        if is_py27 "$cand"; then echo "$cand"; return 0; fi
    done
    return 1
}

PY27="$(find_python27)" || {
    say "error: no Python 2.7 interpreter found."
    say "The Autobahn Testsuite only runs on Python 2.7. Install one, e.g."
    say "  pyenv install 2.7.18        (needs build deps: libssl-dev zlib1g-dev libbz2-dev ...)"
    say "or point PYTHON27 at an existing python2.7 binary, then run this script again."
    exit 3
}
# The real file, so python / python2.7 / a shim for the same interpreter are one stamp.
PY27="$("$PY27" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
say "using Python 2.7 at $PY27"

# The stamp records what the venv was built from; equal stamp = nothing to do.
want_stamp="$( { echo "$PY27"; cat "$REQS" "$SPEEDUPS"; } | cksum | cut -d' ' -f1)"
if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
    && "$VENV27/bin/python" -c 'import autobahntestsuite' >/dev/null 2>&1; then
    say "compliance/.venv27 is up to date ($("$VENV27/bin/wstest" -a 2>/dev/null | tr '\n' ' '))"
    exit 0
fi

make_venv27() {
    local py3="${PYTHON3:-python3}"
    # 1. virtualenv<20.22 from a small Python 3 venv.
    if command -v "$py3" >/dev/null 2>&1; then
        if [ ! -x "$TOOLS/bin/virtualenv" ]; then
            rm -rf "$TOOLS"
            if "$py3" -m venv "$TOOLS" >/dev/null 2>&1 \
                && "$TOOLS/bin/python" -m pip install --quiet 'virtualenv<20.22' 2>/dev/null; then
                :
            else
                say "could not make a Python 3 venv with virtualenv<20.22 (no python3-venv?); trying Python 2.7's pip"
                rm -rf "$TOOLS"
            fi
        fi
        if [ -x "$TOOLS/bin/virtualenv" ]; then
            "$TOOLS/bin/virtualenv" --quiet -p "$PY27" "$VENV27" && return 0
            say "virtualenv from $TOOLS failed; trying Python 2.7's pip"
        fi
    fi
    # 2. virtualenv<20.22 installed with Python 2.7's own pip into a private directory.
    if "$PY27" -m pip --version >/dev/null 2>&1; then
        local target="$TOOLS/py27"
        if [ ! -d "$target/virtualenv" ]; then
            rm -rf "$target"
            "$PY27" -m pip install --quiet --disable-pip-version-check --target "$target" \
                'virtualenv<20.22' 2>/dev/null || return 1
        fi
        PYTHONPATH="$target" "$PY27" -m virtualenv --quiet -p "$PY27" "$VENV27" && return 0
    fi
    return 1
}

rm -rf "$VENV27"
make_venv27 || die "could not create $VENV27 with virtualenv<20.22.
  Install python3-venv (Debian: apt-get install python3-venv) or pip for Python 2.7, then retry."

PIP=("$VENV27/bin/python" -m pip --disable-pip-version-check --no-python-version-warning)
say "installing the Autobahn Testsuite into compliance/.venv27 (about 30 packages)"
# --no-deps: requirements27.txt is the whole closure, pinned; it also keeps the
# "accelerate" extra of autobahn from demanding a compiler (see the speedups file).
"${PIP[@]}" install --quiet --no-deps -r "$REQS" \
    || die "pip could not install $REQS into $VENV27"
if "${PIP[@]}" install --quiet --no-deps -r "$SPEEDUPS" 2>/dev/null; then
    say "installed the optional C speedups (wsaccel)"
else
    say "warning: wsaccel (optional C speedups) did not build; wstest runs, only slower"
fi

"$VENV27/bin/wstest" -a >/dev/null 2>&1 \
    || die "wstest was installed but does not start: try $VENV27/bin/wstest -a"
echo "$want_stamp" >"$STAMP"
say "ready: $("$VENV27/bin/wstest" -a 2>/dev/null | tr '\n' ' ')"
say "wstest is $VENV27/bin/wstest"
