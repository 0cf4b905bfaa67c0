#!/usr/bin/env bash
# Runs `ansible-test sanity` on the collection, with no ignore file.
#
# ansible-test wants the collection at .../ansible_collections/<namespace>/<name> and only
# looks at files git tracks, so the files of this working tree (tracked, plus untracked
# ones that .gitignore does not exclude) are copied to a throw-away tree and committed
# there. Work in progress is therefore checked too, and the real repository is untouched.
#
# There is no tests/sanity/ignore-*.txt: every finding is fixed, not ignored.
#
#   SANITY_KEEP=1     keep the temporary tree (its path is printed) for inspection
#   extra arguments   are passed to ansible-test (e.g. ./scripts/sanity.sh --test pylint)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export PATH="$repo/.venv/bin:$PATH"

# ansible-test keeps its per-test virtualenvs (pylint, validate-modules, ...) under
# ~/.ansible/test/venv. Point HOME into .build so that they live with the other build
# products (`make clean` removes them) and persist from one run to the next.
export HOME="$repo/.build/ansible-test-home"
mkdir -p "$HOME/.ansible/test/cache"

# ansible-test bootstraps pip into each of those virtualenvs with a get-pip script it
# downloads from ci-files.testing.ansible.com, a host that is not reachable from every
# machine (only PyPI is guaranteed). It looks for that script in its cache first, so put
# our own there: it enables the pip bundled with Python (ensurepip) and lets that pip
# install the requested pip version and packages from PyPI, which is all the real
# script does. The file name carries the pip version this ansible-test asks for.
pip_version="$(python - <<'EOF'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
import sys
print(get_venv_packages(NativePythonConfig(version="%d.%d" % sys.version_info[:2]))["pip"])
EOF
)"
cat > "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py" <<'EOF'
"""Stand-in for get-pip.py, written by dany.slony's scripts/sanity.sh."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
EOF

# The shellcheck sanity test is skipped with only a warning when the program is missing.
if ! command -v shellcheck >/dev/null; then
  echo "sanity: installing shellcheck"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/dany-slony-sanity.XXXXXX")"
if [ "${SANITY_KEEP:-0}" = 1 ]; then
  echo "sanity: keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi
tree="$work/ansible_collections/dany/slony"
mkdir -p "$tree"

# Tracked files plus untracked, not ignored ones; skip tracked files deleted in the tree.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ] || [ -L "$f" ]; then
    printf '%s\0' "$f"
  fi
done | (cd "$repo" && xargs -0 --no-run-if-empty cp -P --parents -t "$tree")

(
  cd "$tree"
  git init -q
  git add -A
  git -c user.name=sanity -c user.email=sanity@localhost -c commit.gpgsign=false \
    commit -q -m "sanity snapshot"
)

# --local rather than --venv. Both run each test in the same per-test virtualenvs (cached
# under $HOME, see above); --venv additionally builds a delegation virtualenv inside the
# temporary tree on every run and installs ansible-core's requirements into it. Measured on
# this project (2 CPUs): warm caches --local 11 s vs --venv 18 s; cold (fresh machine, every
# virtualenv built and downloaded from PyPI) --local 70 s vs --venv 75 s; same findings.
# --local runs ansible-test's controller side with .venv's Python 3.11, which already has
# ansible-core's requirements.
cd "$tree"
ansible-test sanity --local --python 3.11 --color no "$@"
