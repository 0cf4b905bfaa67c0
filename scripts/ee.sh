#!/usr/bin/env bash
# ee.sh: checks that an execution environment (AWX, Automation Platform) gets what the
# modules need, without a container engine:
#   1. builds the tarball (scripts/package.sh) and installs it into a fresh collections path;
#   2. `ansible-builder introspect` on that path must find psycopg2 (requirements.txt) and
#      libpq (bindep.txt) through meta/execution-environment.yml;
#   3. bindep must parse bindep.txt for the default and the compile profiles;
#   4. `ansible-builder create` turns an EE definition that installs the tarball into a
#      build context (Containerfile and _build/); the build itself (`ansible-builder build`)
#      needs podman or docker and is not run here.
# The EE definition is the one of the AWX documentation (EE_BASE_IMAGE overrides its base
# image); the context is kept in .build/ee-context for inspection.
#
# ansible-builder runs from .build/venv-builder (scripts/toolenv.sh), never from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
base_image="${EE_BASE_IMAGE:-quay.io/ansible/awx-ee:24.6.1}"

venv="$(./scripts/toolenv.sh builder python3 ansible-builder==3.2.0 bindep==2.14.0)"
work="$(mktemp -d "${TMPDIR:-/tmp}/dany-slony-ee.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tarball="$(./scripts/package.sh "$work/dist")"

fail() { echo "ee: $*" >&2; exit 1; }

# 1. Install as a user would, away from the repository's ansible.cfg (whose
# collections_path already holds the clone).
(cd "$work" && env -u ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH="$work/collections" \
  "$repo/.venv/bin/ansible-galaxy" collection install --offline -p "$work/collections" "$tarball" >/dev/null)

# 2. What ansible-builder would add to the image for this collection.
"$venv/bin/ansible-builder" introspect "$work/collections" \
  --write-pip "$work/pip.txt" --write-bindep "$work/bindep.txt" >/dev/null
echo "ee: ansible-builder introspect found:"
sed 's/^/  /' "$work/pip.txt" "$work/bindep.txt"
grep -q '^psycopg2[^-].*# from collection dany.slony$' "$work/pip.txt" \
  || fail "introspect: no psycopg2 from dany.slony (requirements.txt, meta/execution-environment.yml)"
for pkg in 'libpq \[platform:rpm\]' 'libpq5 \[platform:dpkg\]' 'libpq-devel \[platform:rpm compile\]'; do
  grep -q "^$pkg.*# from collection dany.slony$" "$work/bindep.txt" \
    || fail "introspect: no '$pkg' from dany.slony (bindep.txt)"
done

# 3. bindep itself reads the file, for both profiles (on this platform).
"$venv/bin/bindep" -f bindep.txt -l newline >/dev/null || fail "bindep cannot read bindep.txt"
"$venv/bin/bindep" -f bindep.txt -l newline compile >/dev/null || fail "bindep cannot read bindep.txt (compile)"

# 4. The build context of an EE that installs the tarball.
mkdir -p "$work/ee"
cp "$tarball" "$work/ee/"
cat > "$work/ee/execution-environment.yml" <<YAML
---
version: 3
images:
  base_image:
    name: $base_image
dependencies:
  galaxy:
    collections:
      - name: /build/collections/$(basename "$tarball")
        type: file
additional_build_files:
  - src: $(basename "$tarball")
    dest: collections
YAML
context="$repo/.build/ee-context"
rm -rf "$context"
(cd "$work/ee" && "$venv/bin/ansible-builder" create -f execution-environment.yml -c "$context" \
  --output-filename Containerfile -v 1)
[ -f "$context/Containerfile" ] || fail "ansible-builder create wrote no Containerfile"
[ -f "$context/_build/collections/$(basename "$tarball")" ] || fail "the tarball is not in the build context"
grep -qF "ARG EE_BASE_IMAGE=\"$base_image\"" "$context/Containerfile" || fail "Containerfile does not start from $base_image"
grep -q 'introspect.py introspect' "$context/Containerfile" || fail "Containerfile does not introspect the collections"
cp "$work/ee/execution-environment.yml" "$context/"
echo "ee: build context in ${context#"$repo"/} (build the image with: podman build -t dany-slony-ee .build/ee-context)"
