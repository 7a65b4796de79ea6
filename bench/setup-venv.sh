#!/bin/sh
# Creates the project's one Python environment, target/python/venv (relative
# to the repository root; scripts/test.sh puts the strategy tools of
# guest-sdk-py/requirements-dev.txt in it too), and installs the pinned
# packages of bench/requirements.txt into it. Idempotent: when the venv already holds
# exactly these requirements (a stamp records the file's sha256) and optuna
# imports, nothing is installed and no network is needed. Prints the venv's
# python and optuna version.
#
# usage: bench/setup-venv.sh          (PYTHON=python3.11 to choose the interpreter)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
venv="$root/target/python/venv"
req="$here/requirements.txt"
stamp="$venv/.bench-requirements.sha256"
py="$venv/bin/python"

want=$(sha256sum "$req" | cut -d' ' -f1)

if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$py" -c 'import optuna' 2>/dev/null; then
    :   # up to date
else
    if [ ! -x "$py" ]; then
        mkdir -p "$(dirname "$venv")"
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    rm -f "$stamp"
    "$py" -m pip install --disable-pip-version-check --quiet -r "$req"
    echo "$want" > "$stamp"
fi

echo "venv: $venv"
"$py" -c 'import sys, optuna; print("python", sys.version.split()[0]); print("optuna", optuna.__version__)'
