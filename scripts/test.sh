#!/usr/bin/env bash
# Every test of the collection, in order, stopping at the first failure (`make test`).
#
#   unit        pytest tests/unit (no database)
#   changelog   antsibull-changelog lint (changelog fragments)
#   lint        ansible-lint, production profile (.ansible-lint)
#   importer    galaxy-importer on the built tarball, no error or warning (scripts/importer.sh)
#   ee          execution environment dependencies, ansible-builder introspect + create (scripts/ee.sh)
#   sanity      ansible-test sanity (scripts/sanity.sh)
#   docs        antsibull-docs lint-collection-docs and the documentation site built with
#               Sphinx, warnings as errors (scripts/docs.sh; .build/docs/html)
#   installed   the tarball installed into an empty collections path: ansible-doc and a
#               two-node bring-up with the installed playbooks (scripts/installed.sh)
#   matrix      ansible-test units + sanity on the oldest and newest ansible-core that
#               meta/runtime.yml admits (scripts/matrix.sh); not in the default run (it
#               builds a virtualenv per version, ~10 min on a cold machine): `make matrix`
#   integration pytest tests/integration (the lab: PostgreSQL + Slony + slon)
#   acceptance  pytest tests/acceptance: scenarios ported from Slony-I's own cluster tests
#               on 5-server labs of their own, one per xdist worker (SLONY_ACCEPTANCE_WORKERS,
#               default 2; tests/acceptance/conftest.py)
#   molecule    molecule test --all --workers 2 (extensions/molecule scenarios)
#
# Arguments select stages (./scripts/test.sh unit lint); none means all of them.
# Stages with nothing to run yet (no integration tests, no molecule scenario) say so and
# are skipped; the unit tests always run, so a run never passes without testing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"

all_stages=(unit changelog lint importer ee sanity docs installed matrix integration acceptance molecule)
default_stages=(unit changelog lint importer ee sanity docs installed integration acceptance molecule)
if [ $# -gt 0 ]; then
  stages=("$@")
else
  stages=("${default_stages[@]}")
fi

now() { date +%s%N; }  # nanoseconds
elapsed() {  # seconds since $1, one decimal
  local tenths=$((($(now) - $1) / 100000000))
  printf '%d.%d' $((tenths / 10)) $((tenths % 10))
}

has_files() {  # has_files DIR NAME-PATTERN...: any matching file under DIR?
  local dir="$1"; shift
  local args=() p
  for p in "$@"; do args+=(-o -name "$p"); done
  [ -d "$dir" ] && [ -n "$(find "$dir" -type f \( "${args[@]:1}" \) -print -quit)" ]
}

skipped=()
# -rxX lists the expected failures: each one is a known bug of the core, with its reason.
stage_unit() { pytest -q -rxX tests/unit; }
stage_changelog() { antsibull-changelog lint && echo "changelog fragments: ok"; }
stage_lint() { ansible-lint; }
stage_importer() { ./scripts/importer.sh; }
stage_ee() { ./scripts/ee.sh; }
stage_sanity() { ./scripts/sanity.sh; }
stage_docs() { ./scripts/docs.sh; }
stage_installed() { ./scripts/installed.sh; }
# A version whose Python is missing on the machine is reported as skipped in the table
# rather than failing the run (MATRIX_SKIP_MISSING=0 makes it fail).
stage_matrix() { MATRIX_SKIP_MISSING="${MATRIX_SKIP_MISSING:-1}" ./scripts/matrix.sh; }
stage_integration() {
  if ! has_files tests/integration 'test_*.py' '*_test.py'; then
    echo "no integration tests yet: skipped"
    skipped+=(integration)
    return 0
  fi
  local rc=0
  # Three workers, each with its own lab (tests/integration/lab.py shifts the ports): the
  # tests mostly wait for slon daemons, so they overlap well even on two cores.
  pytest -q -n "${SLONY_TEST_WORKERS:-3}" --dist loadfile --durations=20 -m "not four_servers" tests/integration || rc=$?
  if [ "$rc" -eq 5 ]; then  # pytest: no tests collected
    echo "tests/integration collected no tests: skipped"
    skipped+=(integration)
    return 0
  fi
  [ "$rc" -eq 0 ] || return "$rc"
  # Second pass: the tests marked four_servers (a clone on a 4th server, two failed nodes
  # in one failover), one file per worker, each worker on a lab of 4 servers of its own
  # (ports 54500.., /var/tmp/dany-slony-lab4*), so that the labs of the first pass keep
  # 3 servers.
  SLONY_LAB_NODES=4 SLONY_LAB_PORT_BASE="${SLONY_LAB4_PORT_BASE:-54500}" \
    SLONY_LAB_DIR="${SLONY_LAB4_DIR:-/var/tmp/dany-slony-lab4}" \
    pytest -q -n 2 --dist loadfile --durations=10 -m four_servers tests/integration || rc=$?
  return "$rc"
}
stage_acceptance() {
  if ! has_files tests/acceptance 'test_*.py'; then
    echo "no acceptance scenario yet: skipped"
    skipped+=(acceptance)
    return 0
  fi
  # Two workers, each on a 5-server lab of its own (ports shifted by 10 for gw1, see
  # tests/integration/lab.py): a scenario mostly waits for slon, so two run side by side
  # (the slons of these labs emit idle SYNCs every second, not every 250 ms as in the
  # integration labs: tests/acceptance/harness.py SLON_OPTIONS).
  pytest -q -n "${SLONY_ACCEPTANCE_WORKERS:-2}" --dist loadfile --durations=0 tests/acceptance
}
stage_molecule() {
  if ! compgen -G 'extensions/molecule/*/molecule.yml' >/dev/null; then
    echo "no molecule scenario yet: skipped"
    skipped+=(molecule)
    return 0
  fi
  # Collection mode (galaxy.yml here, scenarios in extensions/molecule). Scenario "default"
  # creates the molecule lab (ports 54421.., /var/tmp/dany-slony-molecule) once and
  # destroys it at the end, its slons first; the other scenarios each work in a database
  # and a cluster of their own, so two of them run side by side. Ansible's output is only
  # shown for a scenario that fails. The scenarios find the collection where
  # scripts/bootstrap.sh links it (.build/collections).
  if [ ! -e .build/collections/ansible_collections/dany/slony/galaxy.yml ]; then
    echo "molecule: .build/collections/ansible_collections/dany/slony is missing: run ./scripts/bootstrap.sh" >&2
    return 1
  fi
  molecule test --all --workers 2
}

for stage in "${stages[@]}"; do
  if ! declare -F "stage_$stage" >/dev/null; then
    echo "test.sh: unknown stage '$stage' (stages: ${all_stages[*]})" >&2
    exit 2
  fi
done

run_start="$(now)"
n=0
for stage in "${stages[@]}"; do
  n=$((n + 1))
  echo "==> [$n/${#stages[@]}] $stage"
  start="$(now)"
  rc=0
  "stage_$stage" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "==> [$n/${#stages[@]}] $stage FAILED after $(elapsed "$start") s (exit $rc)"
    exit "$rc"
  fi
  if [ ${#skipped[@]} -gt 0 ] && [ "${skipped[-1]}" = "$stage" ]; then
    echo "==> [$n/${#stages[@]}] $stage skipped"
  else
    echo "==> [$n/${#stages[@]}] $stage passed in $(elapsed "$start") s"
  fi
done

summary="passed: ${#stages[@]} stages in $(elapsed "$run_start") s"
if [ ${#skipped[@]} -gt 0 ]; then
  summary+="; skipped (nothing to run yet): ${skipped[*]}"
fi
echo "==> $summary"
