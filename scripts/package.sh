#!/usr/bin/env bash
# package.sh [OUTDIR]: builds the collection tarball as a release would (from a copy of the
# files git tracks or would track, scripts/snapshot.sh) into OUTDIR (default .build/dist),
# checks what it holds and prints its path.
#
# What users need must be in it (README, LICENSE, CHANGELOG.rst, the execution environment
# files, a README per role, the unit tests); what only a clone needs must not (galaxy.yml's
# build_ignore: the lab's inventory and configuration, the dev tools and scripts, the
# molecule scenarios, the changelog's plugin cache).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
out="${1:-$repo/.build/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/dany-slony-package.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$(./scripts/snapshot.sh "$work")"
rm -rf "$tree/.git"

version="$(sed -n 's/^version: *//p' galaxy.yml)"
tarball="$out/dany-slony-$version.tar.gz"
rm -f "$tarball"
"$repo/.venv/bin/ansible-galaxy" collection build --force --output-path "$out" "$tree" >/dev/null
[ -f "$tarball" ] || { echo "package: $tarball was not built" >&2; exit 1; }

listing="$work/listing"
tar -tzf "$tarball" | sed 's#/$##' | sort > "$listing"
problems=()
required=(README.md LICENSE CHANGELOG.rst MANIFEST.json FILES.json meta/runtime.yml
          meta/execution-environment.yml requirements.txt bindep.txt docs/docsite/links.yml
          changelogs/changelog.yaml tests/unit tests/conftest.py playbooks/site.yml)
for role in roles/*/; do
  required+=("${role%/}/README.md" "${role%/}/meta/main.yml")
done
for f in "${required[@]}"; do
  grep -qxF "$f" "$listing" || problems+=("missing: $f")
done
# Top-level entries (and files) that only a clone needs.
forbidden='^(\.venv|\.build|\.ansible|\.lab|\.ci|\.git|\.gitignore|\.ansible-lint|\.pytest_cache|ansible\.cfg|Makefile|requirements-dev\.txt|bench|scripts|inventory|extensions|tests/output|changelogs/\.plugin-cache\.yaml|changelogs/fragments)(/|$)|__pycache__|\.pyc$|\.tar\.gz$'
while IFS= read -r f; do
  problems+=("should not be shipped: $f")
done < <(grep -E "$forbidden" "$listing" || true)
if [ ${#problems[@]} -gt 0 ]; then
  printf 'package: %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "package: $tarball ($(wc -l < "$listing") entries, $(du -k "$tarball" | cut -f1) KiB)" >&2
echo "$tarball"
