#!/usr/bin/env bash
# matrix.sh [VERSION...]: `ansible-test units` and `ansible-test sanity` with other
# ansible-core versions than .venv's (which the unit, sanity and integration stages use):
# by default the oldest and the newest release that meta/runtime.yml's requires_ansible
# admits, each in a virtualenv of its own (scripts/toolenv.sh, .build/venv-ansible-X.Y)
# with the Python that release runs on. The collection is tested in a throw-away
# ansible_collections/dany/slony tree (scripts/snapshot.sh), as ansible-test wants it.
#
#   VERSION              e.g. 2.18.19; default: the two of the matrix below
#   MATRIX_TESTS         "units sanity" (default), or one of them
#   MATRIX_SKIP_MISSING=1  skip a version whose Python is not on this machine instead of
#                        failing (the line says so)
#
# Prints one summary line per version and test; writes the table to .build/matrix.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

# ansible-core release -> the controller Python it is tested with here. 2.17 and 2.18 run
# on Python 3.10-3.13 (3.11 is Debian 12's); 2.20 and later need 3.12 or newer.
declare -A python_of=([2.17]=3.11 [2.18]=3.11 [2.19]=3.11 [2.20]=3.12 [2.21]=3.12)
if [ $# -gt 0 ]; then
  versions=("$@")
else
  versions=(2.17.14 2.21.5)
fi
read -r -a tests <<< "${MATRIX_TESTS:-units sanity}"

find_python() {  # find_python 3.12: a working python3.12 (PATH, pyenv, /usr/bin) or nothing
  local want="$1" candidate
  for candidate in "$(command -v "python$want" || true)" \
      "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$want"*/bin/"python$want" \
      "/usr/bin/python$want" "/usr/local/bin/python$want"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# ansible-test bootstraps pip into its per-test virtualenvs with a get-pip script from a
# host that is not reachable from every machine; it looks in its cache first, so put a
# stand-in there (the same as scripts/sanity.sh does; see there).
stand_in_get_pip() {  # stand_in_get_pip VENV HOME
  local pip_version
  pip_version="$("$1/bin/python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
import sys
print(get_venv_packages(NativePythonConfig(version="%d.%d" % sys.version_info[:2]))["pip"])
PY
)"
  mkdir -p "$2/.ansible/test/cache"
  cat > "$2/.ansible/test/cache/get_pip_${pip_version//./_}.py" <<'PY'
"""Stand-in for get-pip.py, written by dany.slony's scripts/matrix.sh."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
PY
}

work="$(mktemp -d "${TMPDIR:-/tmp}/dany-slony-matrix.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$(./scripts/snapshot.sh "$work")"

now() { date +%s; }
rows=()
failed=0
for version in "${versions[@]}"; do
  minor="${version%.*}"
  py="${python_of[$minor]:-3.11}"
  if ! python="$(find_python "$py")"; then
    if [ "${MATRIX_SKIP_MISSING:-0}" = 1 ]; then
      echo "matrix: ansible-core $version: skipped, no Python $py on this machine"
      rows+=("| $version | $py | skipped (no Python $py) | skipped (no Python $py) |")
      continue
    fi
    echo "matrix: ansible-core $version needs Python $py, which is not on this machine" >&2
    exit 1
  fi
  venv="$(./scripts/toolenv.sh "ansible-$minor" "$python" "ansible-core==$version" psycopg2-binary==2.9.13)"
  export HOME="$repo/.build/ansible-test-home-$minor"
  stand_in_get_pip "$venv" "$HOME"
  declare -A result=([units]="not run" [sanity]="not run")
  for test in "${tests[@]}"; do
    log="$work/$version-$test.log"
    start="$(now)"
    case "$test" in
      units)  args=(units --local --requirements --python "$py" --color no) ;;
      sanity) args=(sanity --local --python "$py" --color no) ;;
      *) echo "matrix: unknown test $test" >&2; exit 2 ;;
    esac
    rm -rf "$tree/tests/output"
    if (cd "$tree" && PATH="$venv/bin:$PATH" "$venv/bin/ansible-test" "${args[@]}") > "$log" 2>&1; then
      summary="passed"
      if [ "$test" = units ]; then
        summary="$(grep -Eo '[0-9]+ passed[^=]*' "$log" | tail -1 | sed 's/ *$//')"
      fi
      result[$test]="$summary ($(($(now) - start)) s)"
      echo "matrix: ansible-core $version, Python $py, $test: ${result[$test]}"
    else
      cat "$log"
      result[$test]="FAILED ($(($(now) - start)) s)"
      echo "matrix: ansible-core $version, Python $py, $test: FAILED (log above)" >&2
      failed=1
    fi
  done
  rows+=("| $version | $py | ${result[units]} | ${result[sanity]} |")
  unset result
done

{
  echo "| ansible-core | Python | ansible-test units | ansible-test sanity |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$repo/.build/matrix.md"
cat "$repo/.build/matrix.md"
exit "$failed"
