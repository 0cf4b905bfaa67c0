#!/usr/bin/env bash
# importer.sh: builds the tarball (scripts/package.sh) and runs galaxy-importer on it, the
# check Galaxy and Automation Hub run on upload, with flake8 and the required-tag check on
# as certification has them. Fails on any ERROR or WARNING line of the importer, which
# itself exits 0 on warnings.
#
# galaxy-importer and its ansible-lint run from .build/venv-importer (scripts/toolenv.sh),
# never from .venv. The importer's ansible-lint runs with the production profile on the
# extracted tarball, its flake8 with --isolated (no project configuration applies), so the
# collection must be clean by their settings: `--select E,F,W` reports both W503 and W504,
# so no line may break next to a binary operator (CONTRIBUTING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$(./scripts/toolenv.sh importer python3 galaxy-importer==0.4.44 ansible-core==2.19.14 \
  ansible-lint==26.10.1 flake8==6.1.0)"

work="$(mktemp -d "${TMPDIR:-/tmp}/dany-slony-importer.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tarball="$(./scripts/package.sh "$work/dist")"

cat > "$work/galaxy-importer.cfg" <<CFG
[galaxy-importer]
log_level_main = INFO
run_ansible_doc = True
run_ansible_lint = True
offline_ansible_lint = True
run_flake8 = True
check_changelog = True
check_required_tags = True
run_ansible_test = False
tmp_root_dir = $work
ansible_local_tmp = $work/ansible-tmp
CFG

log="$work/importer.log"
# galaxy-importer gives its ansible-lint a fixed 180 s; on a loaded machine that ran out
# once (an ERROR line "Timeout on call to ansible-lint", nothing else found). Such a run is
# repeated, twice at most; any other finding fails at once.
for attempt in 1 2 3; do
  rc=0
  (
    cd "$work"
    env -u ANSIBLE_CONFIG -u ANSIBLE_COLLECTIONS_PATH PATH="$venv/bin:/usr/bin:/bin" \
      GALAXY_IMPORTER_CONFIG="$work/galaxy-importer.cfg" HOME="$work" \
      "$venv/bin/python" -m galaxy_importer.main "$tarball"
  ) > "$log" 2>&1 || rc=$?
  findings="$(grep -E '^(WARNING|ERROR)' "$log" || true)"
  if [ "$rc" -eq 0 ] && [ "$findings" = "ERROR: Timeout on call to ansible-lint" ] && [ "$attempt" -lt 3 ]; then
    echo "importer: galaxy-importer's ansible-lint timed out (a loaded machine): run $((attempt + 1)) of 3" >&2
    continue
  fi
  break
done
if [ "$rc" -ne 0 ] || [ -n "$findings" ]; then
  cat "$log"
  echo "importer: galaxy-importer failed (exit $rc) or reported $(printf '%s\n' "$findings" | grep -c . ) findings (above)" >&2
  exit 1
fi
grep -E '^(Importing with|Linting collection via)' "$log" || true
echo "importer: $(basename "$tarball"): no errors, no warnings"
