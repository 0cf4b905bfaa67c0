#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian/Ubuntu machine (run as root):
# PostgreSQL 15, Slony-I 2.2 (client, daemon and server library) and a virtualenv
# with the pinned Python tools. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR="${PG_MAJOR:-15}"
packages=("postgresql-${PG_MAJOR}" "postgresql-${PG_MAJOR}-slony1-2" slony1-2-bin pgbouncer acl python3-venv shellcheck git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/ansible-playbook ] || ! cmp -s requirements-dev.txt .venv/.requirements 2>/dev/null; then
  echo "bootstrap: preparing .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  cp requirements-dev.txt .venv/.requirements
fi

# The lab servers, pgbouncer and the benchmarks listen on ports 54300-56499, inside Linux's
# ephemeral range (32768-60999 by default): a client connection that happens to take one of
# them as its local port makes a server starting on that port fail ("Address already in
# use"), which was seen on a busy machine. Reserve the range for listeners where the kernel
# lets us (root, a writable /proc/sys); elsewhere the tests run as before.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
if [ -w "$reserved" ] && ! grep -q '54300-56499' "$reserved" 2>/dev/null; then
  current="$(cat "$reserved")"
  echo "${current:+$current,}54300-56499" > "$reserved" 2>/dev/null \
    || echo "bootstrap: could not reserve ports 54300-56499 (ip_local_reserved_ports); going on"
fi

# Make the repository visible to Ansible as the collection dany.slony.
mkdir -p .build/collections/ansible_collections/dany
ln -sfn ../../../.. .build/collections/ansible_collections/dany/slony
