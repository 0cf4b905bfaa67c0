#!/usr/bin/env bash
# toolenv.sh NAME PYTHON REQUIREMENT...: makes sure the virtualenv .build/venv-NAME exists,
# built with PYTHON and holding exactly the given requirements (pinned: pkg==version), and
# prints its path. The tools of the importer, ee and matrix stages live there, apart from
# .venv (requirements-dev.txt), so that they never change what the other stages run with.
# The venv is rebuilt when the requirements change; `make clean` removes it with .build.
set -euo pipefail
name="${1:?usage: toolenv.sh NAME PYTHON REQUIREMENT...}"
python="${2:?usage: toolenv.sh NAME PYTHON REQUIREMENT...}"
shift 2
cd "$(dirname "$0")/.."
venv="$PWD/.build/venv-$name"
wanted="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') $*"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$wanted" ]; then
  echo "toolenv: preparing $venv ($*)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "$@" > "$venv.log" 2>&1; then
    cat "$venv.log" >&2
    echo "toolenv: pip install $* failed" >&2
    exit 1
  fi
  rm -f "$venv.log"
  echo "$wanted" > "$venv/.requirements"
fi
echo "$venv"
