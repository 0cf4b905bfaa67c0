#!/usr/bin/env bash
# installed.sh: tests the collection as a user gets it, not the clone. Builds the tarball
# (scripts/package.sh), installs it with `ansible-galaxy collection install` into a fresh
# collections path, and from a directory without the repository's ansible.cfg:
#   1. ansible-doc renders every module, the filter and every role's argument spec;
#   2. a two-node lab of its own comes up (playbook dany.slony.lab), playbook dany.slony.site
#      converges it (packages, nodes, paths, slons, set 1, subscription), a second run
#      changes nothing, and dany.slony.status with slony_status_fail_on_warning finds no
#      problem (the copy is done, both slons run, no lag);
#   3. the slons and the lab are removed again, also when a step failed.
# Everything runs from the installed copy: the collections path holds nothing else.
#
#   INSTALLED_PORT_BASE   port of the lab's node 1 (default 54621; node 2: +1)
#   INSTALLED_LAB_DIR     lab directory (default /var/tmp/dany-slony-installed)
#   INSTALLED_KEEP=1      keep the lab and the temporary directory (their paths are printed)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
port_base="${INSTALLED_PORT_BASE:-54621}"
lab_dir="${INSTALLED_LAB_DIR:-/var/tmp/dany-slony-installed}"

work="$(mktemp -d "${TMPDIR:-/tmp}/dany-slony-installed.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tarball="$(./scripts/package.sh "$work/dist")"
collections="$work/collections"

# A user's environment: the installed collection only, no ansible.cfg of the clone.
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$collections"
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
cd "$work"
ansible-galaxy collection install --offline -p "$collections" "$tarball" >/dev/null
installed="$collections/ansible_collections/dany/slony"
where="$(ansible-galaxy collection list dany.slony --format json)"
python3 - "$where" "$collections/ansible_collections" <<'PY'
import json, sys
found = {path: list(colls) for path, colls in json.loads(sys.argv[1]).items() if colls}
assert list(found) == [sys.argv[2]], "dany.slony found in %s, expected only %s" % (found, sys.argv[2])
PY
echo "installed: $(basename "$tarball") into ${collections}"

# 1. Documentation of every plugin and role.
mapfile -t modules < <(ansible-doc -t module -l dany.slony --json |
  python3 -c 'import json,sys; print("\n".join(sorted(json.load(sys.stdin))))')
[ ${#modules[@]} -gt 0 ] || { echo "installed: ansible-doc lists no module of dany.slony" >&2; exit 1; }
ansible-doc -t module --json "${modules[@]}" > "$work/modules.json"
ansible-doc -t filter --json dany.slony.conninfo > "$work/filter.json"
roles=()
for r in "$installed"/roles/*/; do roles+=("dany.slony.$(basename "$r")"); done
ansible-doc -t role --json "${roles[@]}" > "$work/roles.json"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for kind in ("modules", "filter", "roles"):
    docs = json.load(open("%s/%s.json" % (work, kind)))
    bad = [name for name, doc in docs.items() if not doc]
    assert docs and not bad, "%s without documentation: %s" % (kind, bad)
    print("installed: ansible-doc %s: %s" % (kind, ", ".join(sorted(docs))))
PY

# 2. A small real cluster, driven by the installed playbooks.
cat > "$work/inventory.yml" <<YAML
all:
  vars:
    slony_cluster_name: installed
    slony_sets:
      - id: 1
        origin: 1
        comment: installed collection
        schemas: [public, billing]
        exclude: ['^public\\.audit_log\$', '^public\\.settings\$']
        sequence_schemas: [public, billing]
    lab_nodes: 2
    lab_port_base: $port_base
    lab_dir: $lab_dir
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
  children:
    slony_nodes:
      hosts:
        node1: {slony_node_id: 1, slony_db_port: $port_base}
        node2: {slony_node_id: 2, slony_db_port: $((port_base + 1))}
      vars:
        ansible_connection: local
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
        slony_db_host: 127.0.0.1
        slony_db_name: app
        slony_db_user: slony
        slony_db_password: lab-secret-pw
        slony_slon_sync_interval: 100
        slony_slon_sync_interval_timeout: 1000
        # The slons' files go below the lab directory: nothing is left in /etc or /var/log.
        slon_config_dir: $lab_dir/slon/etc
        slon_run_dir: $lab_dir/slon/run
        slon_log_dir: $lab_dir/slon/log
        slon_logrotate: false
YAML
cat > "$work/down.yml" <<'YAML'
- name: Remove the slons of the installed-collection cluster
  hosts: slony_nodes
  gather_facts: false
  roles:
    - role: dany.slony.slon
      slon_cluster_name: "{{ slony_cluster_name }}"
      slon_node_id: "{{ slony_node_id }}"
      slon_state: absent

- name: Stop the lab
  ansible.builtin.import_playbook: dany.slony.lab
  vars:
    lab_state: absent
YAML
playbook() { ansible-playbook -i "$work/inventory.yml" "$@"; }
down() {
  local rc=$?
  if [ "${INSTALLED_KEEP:-0}" = 1 ]; then
    echo "installed: keeping the lab ($lab_dir) and $work"
  else
    playbook "$work/down.yml" > "$work/down.log" 2>&1 || { cat "$work/down.log"; rc=1; }
    rm -rf "$work"
  fi
  exit "$rc"
}
trap down EXIT

run() {  # run NAME PLAYBOOK ARGS...: quiet unless it fails; prints the recap
  local name="$1"; shift
  local log="$work/$name.log"
  if ! playbook "$@" > "$log" 2>&1; then
    cat "$log"
    echo "installed: $name failed" >&2
    return 1
  fi
  echo "installed: $name: $(grep -E '^(localhost|node[0-9]) +:' "$log" | tr -s ' ' | paste -sd ';' -)"
}
run lab dany.slony.lab
run site dany.slony.site
run site-again dany.slony.site
if grep -E '^(localhost|node[0-9]) +:' "$work/site-again.log" | grep -vq 'changed=0 '; then
  echo "installed: the second run of dany.slony.site changed something" >&2
  exit 1
fi
run status dany.slony.status -e slony_status_fail_on_warning=true
grep -A8 'Slony-I cluster installed' "$work/status.log" | sed -n '1,6p' | sed 's/^ *//'
