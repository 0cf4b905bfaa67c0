# The two commands the README documents: `make demo` and `make test`.
# Everything else is a building block of those two.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: demo test bootstrap units integration acceptance sanity lint lab lab-down clean bench

bootstrap:
	./scripts/bootstrap.sh

demo: bootstrap
	ansible-playbook playbooks/demo.yml

test: bootstrap
	./scripts/test.sh

units: bootstrap
	pytest -q tests/unit

# Both passes: the 3-server labs, then the four_servers tests on 4-server labs.
integration: bootstrap
	./scripts/test.sh integration

# Scenarios ported from Slony-I's own cluster tests, on a 5-server lab of their own.
acceptance: bootstrap
	./scripts/test.sh acceptance

sanity: bootstrap
	./scripts/sanity.sh

lint: bootstrap
	ansible-lint

lab: bootstrap
	ansible-playbook playbooks/lab.yml

lab-down: bootstrap
	ansible-playbook playbooks/demo_down.yml

clean: lab-down
	rm -rf .build

# Side-by-side timing against slonik on a lab of its own (bench/README.md).
# make bench BENCH_ARGS=--quick   for T=10,100 and one repetition.
bench: bootstrap
	python bench/run.py $(BENCH_ARGS)

# Packaging checks (scripts/test.sh stages of the same names; each tool in a virtualenv
# of its own under .build, see CONTRIBUTING.md).
.PHONY: package importer ee installed matrix changelog
package: bootstrap
	./scripts/package.sh

importer: bootstrap
	./scripts/test.sh importer

ee: bootstrap
	./scripts/test.sh ee

installed: bootstrap
	./scripts/test.sh installed

matrix: bootstrap
	./scripts/test.sh matrix

# The documentation site (modules, filters, roles and the guides of docs/docsite) in
# .build/docs/html, built with antsibull-docs and Sphinx in .build/venv-docs; any Sphinx
# warning or antsibull-docs lint finding fails it (scripts/docs.sh).
.PHONY: docs
docs: bootstrap
	./scripts/docs.sh

# Folds changelogs/fragments into the release galaxy.yml names (changelog.yaml,
# CHANGELOG.rst); run again after adding a fragment, until that version is released.
changelog: bootstrap
	antsibull-changelog release --update-existing --refresh-fragments without-archives
