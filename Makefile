# vfio.avic — every entry point of the collection's checkout.
#   make audit        this machine's AVIC report (installs the Python tools in .venv first)
#   sudo make deps    the test lab's system packages, podman set-up and images (Debian, root)
#   make test         every test: unit, lint, sanity, molecule labs, the oldest and newest kernels' probe, the ansible-core matrix
#   make test-quick   unit, lint and sanity only (no root needed)
#   make lab-images   the VM lab's disk images, built or found current (root)
#   sudo make bench   the scale benchmark on simulated fleets (docs/performance.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
COLL := $(CURDIR)/.build/collections/ansible_collections/vfio/avic
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export PATH := $(BIN):$(PATH)
# Every scenario but kvm (real KVM guests in the VM lab, about 9 minutes on a quiet machine, fragile beside
# other jobs: README): with it `.ci/run` would pass its 60-minute budget on 2 cores; make kernel-probe
# is make test's real-KVM part. kvm runs when named (make molecule SCENARIOS=kvm).
SCENARIOS ?= $(filter-out kvm,$(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))))

.PHONY: audit venv collection deps test test-quick unit integration lint sanity molecule molecule-vm molecule-containers lab-images kernel-matrix kernel-probe kernel-probe-oldest core-matrix faults bench build docs clean

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
	bash tests/matrix/controller.sh 2.16 >/dev/null
	bash tests/matrix/controller.sh 2.21 >/dev/null

# make test: the quick checks, then two lanes side by side (make -j2, each target's output printed
# whole when it ends; a failing target fails make test): the VM lab's (its images, the vm scenario,
# the kernel probe: QEMU with one vCPU busy, about one core) and the containers' (integration,
# faults, the container scenarios, the ansible-core matrix: Python and podman). README gives the figures.
test: test-quick
	$(MAKE) --no-print-directory -j2 --output-sync=target LANES=ordered kernel-probe core-matrix

# each lane's steps one after the other (the order make test gives them)
ifeq ($(LANES),ordered)
molecule-vm: | lab-images
kernel-probe: | molecule-vm
faults: | integration
molecule-containers: | faults
core-matrix: | molecule-containers
endif

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

# root, after make deps: the host and guest roles under injected faults, on real containers
# (tests/faults: full and read-only file systems, a killed converge, libvirtd stopped or restarted)
faults: venv collection
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/faults

# The vm and kvm scenarios (real kernel under QEMU TCG; kvm with nested KVM guests) run where tests/lab/vm.py check says it can, and
# says why when it cannot; SCENARIOS="facts host" runs a subset.
define molecule_scenarios
@set -e; for s in $(1); do \
  if { [ $$s = vm ] || [ $$s = kvm ]; } && ! python3 tests/lab/vm.py check; then echo "=== molecule scenario $$s skipped"; continue; fi; \
  echo "=== molecule scenario $$s"; start=$$(date +%s); $(BIN)/molecule test -s $$s; \
  echo "=== molecule scenario $$s passed in $$(( $$(date +%s) - start )) s"; done
endef
molecule: venv collection
	$(call molecule_scenarios,$(SCENARIOS))
# make test's two halves of it: the VM lab's scenario, and the others (real containers)
molecule-vm: venv collection
	$(call molecule_scenarios,$(filter vm,$(SCENARIOS)))
molecule-containers: venv collection
	$(call molecule_scenarios,$(filter-out vm,$(SCENARIOS)))

# root, after make deps: the VM lab's three disk images (the vm scenario's, the kernel probe's oldest
# and newest), built or found current (vm.py builds one at a time: they share a mount point)
lab-images:
	@if ! python3 tests/lab/vm.py check; then echo "=== lab images skipped"; exit 0; fi; \
	  set -e; start=$$(date +%s); python3 tests/lab/vm.py build; python3 tests/lab/vm.py build --kvm; \
	  python3 tests/lab/vm.py build --kvm --newest; echo "=== lab images built in $$(( $$(date +%s) - start )) s"

# root, after make deps: re-record tests/fixtures/kernels/ on every kernel of the matrix, each installed
# by the kernel role (tests/lab/kernel_matrix.py; the newest is NEWEST_RELEASE of tests/lab/vm.py,
# MATRIX_NEWEST=<release> picks another trixie-backports kernel)
kernel-matrix: venv collection
	$(BIN)/python tests/lab/kernel_matrix.py $(ARGS)

# root, after make deps: the oldest and the newest kernel of the matrix, probed afresh with real
# KVM guests (bookworm's own 6.1; the newest preinstalled in the image of vm.py build --kvm --newest),
# then tests/unit/test_kernel_fixtures.py on those recordings and against the stored ones.
# make kernel-probe-oldest: the oldest only (half the time).
KERNEL_PROBE_OUT := $(CURDIR)/.build/kernel-probe
KERNEL_PROBE ?= bookworm newest
kernel-probe-oldest:
	$(MAKE) kernel-probe KERNEL_PROBE=bookworm
kernel-probe: venv collection
	@if ! python3 tests/lab/vm.py check; then echo "=== kernel probe skipped"; exit 0; fi; \
	  set -e; start=$$(date +%s); rm -rf $(KERNEL_PROBE_OUT); \
	  $(BIN)/python tests/lab/kernel_matrix.py --out $(KERNEL_PROBE_OUT) $(KERNEL_PROBE); \
	  VFIO_AVIC_KERNEL_RECORDINGS=$(KERNEL_PROBE_OUT) $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_kernel_fixtures.py; \
	  echo "=== kernel probe passed in $$(( $$(date +%s) - start )) s"

# Unit tests, sanity and the site scenario on the oldest and the newest supported ansible-core
# (tests/matrix/controller.sh builds each controller once); the default one is the targets above.
# CORE_LEGS=2.16 runs one leg.
CORE_LEGS ?= 2.16 2.21
core-matrix: collection
	@set -e; for v in $(CORE_LEGS); do bin=$$(bash tests/matrix/controller.sh $$v); \
	  for step in unit sanity site; do start=$$(date +%s); echo "=== ansible-core $$v: $$step"; \
	    case $$step in \
	      unit) PATH=$$bin:$$PATH $$bin/python -m pytest -q -p no:cacheprovider tests/unit ;; \
	      sanity) PATH=$$bin:$$PATH SANITY_DIR=$(CURDIR)/.build/sanity-$$v bash tests/sanity/run.sh ;; \
	      site) PATH=$$bin:$$PATH $$bin/molecule test -s site ;; \
	    esac; echo "=== ansible-core $$v: $$step passed in $$(( $$(date +%s) - start )) s"; done; done

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
