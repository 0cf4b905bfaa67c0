#!/usr/bin/env bash
# snapshot.sh DIR: copies this working tree's files - tracked ones plus untracked ones that
# .gitignore does not exclude, as scripts/sanity.sh does - to DIR/ansible_collections/dany/slony
# and commits them there (ansible-test only looks at files git tracks). Prints the path of
# the copy. Work in progress is included; the real repository is untouched.
set -euo pipefail
dest="${1:?usage: snapshot.sh DIR}"
cd "$(dirname "$0")/.."
repo="$PWD"
tree="$dest/ansible_collections/dany/slony"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ] || [ -L "$f" ]; then
    printf '%s\0' "$f"
  fi
done | xargs -0 --no-run-if-empty cp -P --parents -t "$tree"
(
  cd "$tree"
  git init -q
  git add -A
  git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
    commit -q -m "snapshot of $repo"
)
echo "$tree"
