# lapidary — the two commands are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help demo test fmt-check clippy unit packaging e2e bench images crd plan-sample helm \
        cluster-up cluster-down

help:
	@echo "make demo     integrate the bundled 166-module example locally (no cluster)"
	@echo "make test     every test: format, lint, unit, packaging, end to end"
	@echo "make bench    local mode against the Python/git-CLI baseline"
	@echo "make images   build the operator and integrator images into target/images/"
	@echo "make crd      regenerate deploy/crd.yaml, the chart's copy and deploy/install.yaml"

demo:
	scripts/demo.sh

test: fmt-check clippy unit packaging e2e

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The end-to-end scenarios need a cluster (they fail without one): they run in `e2e`.
unit:
	$(CARGO) test --workspace --exclude lapidary-kind-tests
	$(CARGO) test -p lapidary-kind-tests --lib

e2e:
	kind-tests/e2e.sh

packaging:
	scripts/test-packaging.sh

bench:
	bench/run.sh

images:
	scripts/images.sh

crd:
	$(CARGO) run -q -p lapidary-operator -- crd > deploy/crd.yaml
	scripts/regen-deploy.sh

plan-sample:
	$(CARGO) run -q -p lapidary-operator -- plan deploy/samples/gems-166.yaml

helm:
	@scripts/helm.sh version

cluster-up:
	kind-tests/cluster.sh up

cluster-down:
	kind-tests/cluster.sh down
