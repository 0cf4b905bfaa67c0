# The two commands the README documents: `make demo` and `make test`.
# Everything else is a building block of those two.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: demo test bootstrap units integration sanity lint lab lab-down clean bench

bootstrap:
	./scripts/bootstrap.sh

demo: bootstrap
	ansible-playbook playbooks/demo.yml

test: bootstrap
	./scripts/test.sh

units: bootstrap
	pytest -q tests/unit

integration: bootstrap
	pytest -q tests/integration

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
