# vfio.avic — every entry point of the collection's checkout.
#   make audit        this machine's AVIC report (installs the Python tools in .venv first)
#   sudo make deps    the test lab's system packages, podman set-up and images (Debian, root)
#   make test         every test: unit, lint, sanity, molecule labs
#   make test-quick   unit, lint and sanity only (no root needed)
#   sudo make bench   the scale benchmark on simulated fleets (docs/performance.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
COLL := $(CURDIR)/.build/collections/ansible_collections/vfio/avic
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export PATH := $(BIN):$(PATH)
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

.PHONY: audit venv collection deps test test-quick unit integration lint sanity molecule bench build docs clean

audit: venv collection
	ansible-playbook playbooks/audit.yml $(ARGS)

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

collection:
	@mkdir -p $(dir $(COLL))
	@[ -L $(COLL) ] || ln -sfn $(CURDIR) $(COLL)

deps:
	bash tests/lab/setup-host.sh --libvirt
	bash tests/lab/build-image.sh trixie

test: test-quick integration molecule

test-quick: unit lint sanity

unit: venv collection
	$(BIN)/python -m pytest -q tests/unit

# root only: the real tracefs of this machine (skipped where the kernel has no KVM tracepoints)
integration: venv collection
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

lint: venv collection
	$(BIN)/ansible-lint --profile production

sanity: venv
	bash tests/sanity/run.sh

# The vm scenario (real kernel under QEMU TCG) runs where tests/lab/vm.py check says it can, and
# says why when it cannot; SCENARIOS="facts host" runs a subset.
molecule: venv collection
	@set -e; for s in $(SCENARIOS); do \
	  if [ $$s = vm ] && ! python3 tests/lab/vm.py check; then echo "=== molecule scenario vm skipped"; continue; fi; \
	  echo "=== molecule scenario $$s"; start=$$(date +%s); $(BIN)/molecule test -s $$s; \
	  echo "=== molecule scenario $$s passed in $$(( $$(date +%s) - start )) s"; done

# the scale benchmark (root, after make deps): prints seconds, ratio to ping, round trips per host
bench: venv collection
	$(BIN)/python benchmarks/fleet.py $(ARGS)

build: venv
	mkdir -p .build/dist && $(BIN)/ansible-galaxy collection build --force --output-path .build/dist .

docs: collection
	$(PYTHON) tools/gen_findings_doc.py
	$(BIN)/python tools/gen_role_docs.py

clean:
	rm -rf .build tests/output .pytest_cache
