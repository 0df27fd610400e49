# Local development and CI entry points. Everything runs on loopback and is bounded in time.
#
#   make tools   build/install kube-apiserver, kubectl, etcd, helm, BIND 9, LocalDnsHelper, external-dns's parts, ... (scripts/tools.sh)
#   make up      start the local environment; prints exports: eval "$(make -s up)"
#   make down    stop it and remove its state
#   make test    the full suite (what .ci/run runs): tools, lint, env-lifecycle, integration
#   make lint    cargo fmt --check and cargo clippy -D warnings
#   make env-lifecycle   check that up/down leave no process, port or state behind
#   make integration     cargo test --all-targets against a fresh environment, then down
#   make demo    environment + operator (serve, controller), examples/local/ applied, result shown
#                (PROVIDER=powerdns: through the local PowerDNS API instead of BIND)
#   make bench   time from applying a MailDomain to BIND answering it (BENCH_N=20 domains)
#   make bench-checks   live checks: one domain, and BENCH_DOMAINS=1000 at BENCH_CONCURRENCY="8 32 128"
#   make bench-scale   BENCH_SCALE_N=10000 MailDomains at once (BENCH_SCALE_ZONES zones): time to Ready, RSS, requests, restart
#   make bench-tlsrpt   TLS-RPT parsing: reports/s of ours and of parsedmarc over ../shared/tlsrpt-samples
#   make test-faults   the fault test's long form: FAULT_RECONCILES=2000 passes per HTTP backend, 30% faulty calls
#   make test-kills    the SIGKILL test's long form: the controller killed at KILL_POINTS=100 random points
#   make bench-serve   the policy server at BENCH_SERVE_DOMAINS=10000 policies beside nginx: wrk req/s, p99, ratio
#   make fuzz    every fuzz target (fuzz/) for FUZZ_RUNS executions each (default 10,000,000)
#   make fuzz-smoke   every fuzz target for 100k executions or 20 s; part of `make test`
#   make crds    regenerate crds/ and the chart's copy from the code (`mailsec crd`)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# `make test` uses an environment of its own (and always takes it down), so an environment
# started with `make up` survives a test run.
# One per checkout, so test runs of two clones on one machine do not share (and stop) it.
TEST_ENV_DIR ?= $${XDG_RUNTIME_DIR:-/tmp}/mailsec-test-$$(id -un)-$$(pwd | cksum | cut -d" " -f1)
# Upper bound for `cargo test` (seconds), so a hung test cannot hang CI.
TEST_TIMEOUT ?= 1800

.NOTPARALLEL:
.PHONY: help tools up down test lint fmt-check clippy rust-components env-lifecycle integration demo bench bench-checks bench-scale bench-tlsrpt bench-serve test-faults test-kills crds fuzz fuzz-smoke

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

tools:
	@scripts/tools.sh >/dev/null

up: tools
	@scripts/env-up.sh

down:
	@scripts/env-down.sh

rust-components:
	@for c in rustfmt clippy; do \
	  rustup component list --installed 2>/dev/null | grep -q "^$$c" || rustup component add "$$c"; \
	done

fmt-check: rust-components
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check

clippy: rust-components
	cargo clippy --all-targets -- -D warnings

lint: fmt-check clippy

env-lifecycle: tools
	scripts/test-env-lifecycle.sh

integration: tools
	MAILSEC_ENV_DIR="$(TEST_ENV_DIR)" scripts/with-env.sh \
	  timeout -k 30 $(TEST_TIMEOUT) cargo test --all-targets

test: tools lint env-lifecycle integration fuzz-smoke

# Fuzzing (scripts/fuzz.sh; cargo-fuzz from scripts/tools.d/cargo-fuzz.sh). On the project's
# stable toolchain with `--sanitizer none`: sanitizers need nightly, which rustup cannot install
# on a fresh machine here (only package registries are reachable), and the project's code is
# `unsafe_code = forbid`, so AddressSanitizer would watch only dependencies. libFuzzer's
# coverage instrumentation is stable rustc flags; panics, overflows (debug assertions on),
# timeouts and the RSS limit are what the targets catch. One target at a time: 2 cores.
# fuzz-smoke in `make test` costs a second, instrumented build of the crate and its
# dependencies (the larger part of its time when cold).
FUZZ_RUNS ?=
FUZZ_RSS_MB ?= 1024

fuzz: tools
	@FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_RSS_MB=$(FUZZ_RSS_MB) scripts/fuzz.sh long

fuzz-smoke: tools
	@FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_RSS_MB=$(FUZZ_RSS_MB) scripts/fuzz.sh smoke

# Both leave the environment and the operator running (`make down` stops them); they share the
# `make up` environment. See scripts/demo.sh, scripts/bench-publish.sh, scripts/operator-up.sh.
# PROVIDER=powerdns writes through the local PowerDNS's HTTP API instead of RFC 2136 to BIND.
PROVIDER ?= rfc2136

demo: tools
	@MAILSEC_DEMO_PROVIDER=$(PROVIDER) scripts/demo.sh

BENCH_N ?= 20

bench: tools
	@scripts/bench-publish.sh $(BENCH_N)

BENCH_DOMAINS ?= 1000
BENCH_CONCURRENCY ?= 8 32 128

# Uses (or starts) the `make up` environment, like `make bench`; see benches/checks.rs.
bench-checks: tools
	cargo bench --bench checks -- $(BENCH_DOMAINS) $(BENCH_CONCURRENCY)

crds:
	cargo run -q -- crd > crds/mailsec.io.yaml
	cp crds/mailsec.io.yaml charts/mailsec-operator/files/crds.yaml

BENCH_SCALE_N ?= 10000
BENCH_SCALE_ZONES ?= 1

# An environment of its own (taken down afterwards); see scripts/bench-scale.sh.
bench-scale: tools
	@scripts/bench-scale.sh $(BENCH_SCALE_N) $(BENCH_SCALE_ZONES)

BENCH_SECONDS ?= 3

bench-tlsrpt:
	@scripts/bench-tlsrpt.sh $(BENCH_SECONDS)

FAULT_RECONCILES ?= 2000

# The short form (100 passes per backend) runs in `make test`; FAULT_SEED=<n> repeats a run.
test-faults: tools
	MAILSEC_ENV_DIR="$(TEST_ENV_DIR)" FAULT_RECONCILES=$(FAULT_RECONCILES) scripts/with-env.sh \
	  timeout -k 30 $(TEST_TIMEOUT) cargo test --test provider_contract -- \
	  thirty_percent_faulty_api_calls_still_converge_exactly --nocapture

KILL_POINTS ?= 100

# The short form (20 points) runs in `make test`; KILL_SEED=<n> repeats a run.
test-kills: tools
	MAILSEC_ENV_DIR="$(TEST_ENV_DIR)" KILL_POINTS=$(KILL_POINTS) scripts/with-env.sh \
	  timeout -k 30 $(TEST_TIMEOUT) cargo test --test controller_kill -- --nocapture

BENCH_SERVE_DOMAINS ?= 10000
BENCH_SERVE_SECONDS ?= 10

# No environment: the policies are fed from memory (see scripts/bench-serve.sh); tools installs
# nginx and wrk (scripts/tools.d/nginx-wrk.sh).
bench-serve: tools
	@scripts/bench-serve.sh $(BENCH_SERVE_DOMAINS) $(BENCH_SERVE_SECONDS)
