# BizOps Pilot — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# Build sqlx::query! macros from the committed query data (services/*/.sqlx), never
# from whatever DATABASE_URL happens to be set. `scripts/sqlx-prepare` regenerates it.
export SQLX_OFFLINE := true
export CARGO_TERM_COLOR ?= never

.PHONY: run test lint fmt fmt-check clippy buf-lint chart-lint build nextest nextest-installed doctest bench bench-quick dev-services tools sqlx-prepare

## run: start Postgres + NATS, build, migrate and run every service locally (Ctrl-C stops)
run:
	scripts/run-dev

## test: services up, lint, then every test of the workspace (unit, integration, end to end)
test: dev-services lint build nextest doctest

## lint: rustfmt check, clippy with -D warnings, buf lint of the contracts, the Helm chart offline
lint: fmt-check clippy buf-lint chart-lint

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

buf-lint: tools
	cd proto && ../node_modules/.bin/buf lint

## chart-lint: offline helm lint, render (default + production values), Kubernetes schema
## validation, k8s/bizops.yaml in sync (`scripts/chart-lint --update` rewrites it)
chart-lint:
	scripts/chart-lint

build:
	$(CARGO) build --workspace --bins

nextest: nextest-installed
	$(CARGO) nextest run --workspace --no-fail-fast

nextest-installed:
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install cargo-nextest --locked

doctest:
	$(CARGO) test --workspace --doc

## bench: the whole-suite benchmark (release build, ≤ 10 min); writes bench/RESULTS.md
## and bench/results/<date>.json; see bench/README.md
bench: dev-services
	$(CARGO) build --release --workspace --bins
	"$${CARGO_TARGET_DIR:-target}/release/bizops-bench" $(BENCH_ARGS)

## bench-quick: the same, every phase short (≤ 60 s), for development
bench-quick: dev-services
	$(CARGO) build --release --workspace --bins
	"$${CARGO_TARGET_DIR:-target}/release/bizops-bench" --quick $(BENCH_ARGS)

dev-services:
	scripts/dev-services

tools:
	scripts/dev-tools

## sqlx-prepare: regenerate services/*/.sqlx after changing a query or a migration
sqlx-prepare:
	scripts/sqlx-prepare
