#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine: system packages, Python 3.12 venv, this package.
# Used by both README commands and by CI. Re-running it is cheap once everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${LEROBOT_PIRL_VENV:-.venv}"

# Headless MuJoCo (gym-hil) renders through OSMesa.
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libosmesa6 >/dev/null
    else
        echo "warning: install OSMesa (Debian: libosmesa6) for headless MuJoCo" >&2
    fi
fi

find_python() {
    # pyenv's shim fails for a bare python3.12 here; ask pyenv for the 3.12 it has first.
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -rV); do
            if candidate="$(PYENV_VERSION="$version" pyenv which python3.12 2>/dev/null)"; then
                echo "$candidate"; return 0
            fi
        done
    fi
    for candidate in python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null; then
            command -v "$candidate"; return 0
        fi
    done
    echo "error: Python >= 3.12 is required (LeRobot 0.6); install python3.12" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import lerobot_pirl, pytest, pytest_timeout, xdist' 2>/dev/null ||
    [ pyproject.toml -nt "$VENV/.lerobot_pirl_installed" ]; then
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir -e ".[dev]"
    touch "$VENV/.lerobot_pirl_installed"
fi
