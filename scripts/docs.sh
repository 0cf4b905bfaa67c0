#!/usr/bin/env bash
# docs.sh: renders the collection's documentation site into .build/docs/html (`make docs`,
# the `docs` stage of scripts/test.sh) and lints the collection's documentation.
#
#   0. docs/docsite/rst/python_api.rst and awx.rst up to date with docs/python-api.md and
#      docs/awx.md (scripts/md2rst.py, pandoc from pypandoc-binary);
#   1. antsibull-docs lint-collection-docs --plugin-docs: the modules', filter's and roles'
#      documentation, docs/docsite/extra-docs.yml, links.yml and the guides in
#      docs/docsite/rst (labels, toctree, RST checked by rstcheck);
#   2. antsibull-docs sphinx-init + collection: the Sphinx project in .build/docs/site, one
#      RST page per module, filter and role, the collection index and the guides;
#   3. sphinx-build -W -n: any warning (an unresolved reference, bad RST) fails the build,
#      after all of them are shown (--keep-going).
#
# The tools run from .build/venv-docs (scripts/toolenv.sh), never from .venv. The collection
# is the clone itself, as scripts/bootstrap.sh links it under .build/collections. Nothing is
# fetched from the network: the references to the Ansible documentation (docs.ansible.com)
# that antsibull-docs writes resolve through a small local intersphinx inventory made
# below, which lists the few targets the pages use. A new "undefined label" warning from
# Sphinx means a new one: add it to that list.
#
# DOCS_COLLECTIONS_PATH=<dir> documents the dany.slony found in <dir>/ansible_collections/dany/slony
# instead (a copy of another checkout, or an installed collection).
#
# Open .build/docs/html/index.html in a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

venv="$(./scripts/toolenv.sh docs python3 antsibull-docs==2.28.0 ansible-core==2.19.14 \
  sphinx==9.0.4 sphinx-ansible-theme==0.10.4 ansible-pygments==0.1.2 pypandoc-binary==1.17)"

collections="${DOCS_COLLECTIONS_PATH:-$root/.build/collections}"
collections="$(cd "$collections" 2>/dev/null && pwd || echo "$collections")"
collection="$collections/ansible_collections/dany/slony"
if [ ! -e "$collection/galaxy.yml" ]; then
  echo "docs: $collection is missing: run ./scripts/bootstrap.sh" >&2
  exit 1
fi

# The site's versions of docs/python-api.md and docs/awx.md (docs/docsite/rst/python_api.rst,
# awx.rst) are generated from them by scripts/md2rst.py; DOCS_UPDATE=1 rewrites them.
if [ "${DOCS_UPDATE:-0}" = 1 ]; then
  "$venv/bin/python" scripts/md2rst.py --root "$collection"
elif ! "$venv/bin/python" scripts/md2rst.py --check --root "$collection"; then
  echo "docs: edit docs/*.md, not the generated pages; DOCS_UPDATE=1 ./scripts/docs.sh rewrites them" >&2
  exit 1
fi

export PATH="$venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$collections"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export ANSIBLE_LOCAL_TEMP="$root/.build/docs/ansible-tmp"

site="$root/.build/docs/site"
html="$root/.build/docs/html"
rm -rf "$site" "$html"
mkdir -p "$site" "$ANSIBLE_LOCAL_TEMP"

echo "docs: antsibull-docs lint-collection-docs --plugin-docs"
(cd "$collection" && antsibull-docs lint-collection-docs --plugin-docs .)

echo "docs: antsibull-docs sphinx-init + collection"
(
  cd "$collection"
  antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
    --project dany.slony --copyright 'dany.slony developers' \
    --title 'dany.slony documentation' --html-short-title dany.slony \
    --dest-dir "$site" dany.slony > /dev/null
)
# What sphinx-init writes, adjusted: no inventory downloads (local file below), the
# collection's own links in the top bar instead of the Ansible project's.
cat >> "$site/conf.py" <<CONF

# --- added by scripts/docs.sh ---
intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', '$site/ansible_devel.inv'),
}
html_theme_options = {
    'topbar_links': {
        'Repository': 'https://github.com/dany-slony/dany.slony',
        'Issues': 'https://github.com/dany-slony/dany.slony/issues',
        'Ansible documentation': 'https://docs.ansible.com/',
    },
    'documentation_home_url': 'https://github.com/dany-slony/dany.slony',
}
CONF

# The intersphinx inventory of the docs.ansible.com targets the pages refer to
# (Sphinx inventory format 2: a text header, then zlib-compressed lines
# "name domain:role priority uri display-name").
"$venv/bin/python" - "$site/ansible_devel.inv" <<'PY'
import sys
import zlib

targets = [
    # label, page (relative to the devel docs), display name
    ("common_return_values", "reference_appendices/common_return_values.html#common-return-values",
     "Return Values"),
    ("ansible_configuration_settings", "reference_appendices/config.html#ansible-configuration-settings",
     "Ansible Configuration Settings"),
    ("ansible_collections.community.postgresql.postgresql_info_module",
     "collections/community/postgresql/postgresql_info_module.html"
     "#ansible-collections-community-postgresql-postgresql-info-module",
     "community.postgresql.postgresql_info module"),
]
body = "".join("%s std:label -1 %s %s\n" % target for target in targets)
with open(sys.argv[1], "wb") as out:
    out.write(b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
              b"# The remainder of this file is compressed using zlib.\n")
    out.write(zlib.compress(body.encode("utf-8")))
PY

(
  cd "$collection"
  mkdir -p "$site/rst"
  chmod og-w "$site/rst"  # antsibull-docs wants that directory only writable by itself
  antsibull-docs --config-file "$site/antsibull-docs.cfg" collection --cleanup everything \
    --fail-on-error --use-current --squash-hierarchy --dest-dir "$site/rst" dany.slony > /dev/null
)

echo "docs: sphinx-build"
sphinx-build -q -b html -W --keep-going -n -c "$site" "$site/rst" "$html"
echo "docs: $(find "$html" -name '*.html' | wc -l) pages in ${html#"$root"/}: open ${html#"$root"/}/index.html"
