# iotsub — `make demo` runs the whole system on this machine; `make test` runs every test tier.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3

.PHONY: all build build-release deps container-tools images images-push images-test lint unit component interop e2e soak soak-smoke test demo demo-smoke demo-local bench-emulator bench-samples bench-http bench-http-modes bench-http-peers bench-latency clean

all: build

## Everything the tests need that is not in the repo: Python packages, kubectl, helm (idempotent).
deps:
	scripts/install-deps.sh

## podman and runc from Debian where missing (images only: `make test` builds no image).
container-tools:
	scripts/install-container-tools.sh

build:
	$(CARGO) build --workspace --bins

build-release:
	$(CARGO) build --workspace --bins --release

## Gates: formatting (rustfmt.toml) and clippy with the workspace's lints, warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Tier 1: pure logic.
unit:
	$(CARGO) test --workspace --lib --bins

## Tier 2: real processes over TLS on loopback (emulator, worker, faults).
component: build
	$(CARGO) test -p iotsub-tests --tests -- --test-threads 2

## Tier 2: third-party AMQP 1.0 clients against the emulator.
interop: build deps
	$(PYTHON) -m pytest -q tests/interop

## Tier 3: the operator and workers on the local control plane (tests/cluster).
e2e: build cluster-up
	$(CARGO) test -p iotsub-e2e -- --test-threads 1

## Tier 4: the whole system (the chart's operator with leader election, worker pods, the stand-in as a
## pod, the emulator) under load and a seeded schedule of 13 kinds of fault, invariants checked as it
## runs and at the end (docs/reliability.md). SOAK_MINUTES (default 10); SOAK_SEED replays a run.
soak: build cluster-up
	$(CARGO) run -q -p iotsub-e2e --bin soak

## The soak for 3 minutes with a fixed plan (SOAK_SEED=1 unless set; part of `make test`).
soak-smoke: build cluster-up
	SOAK_MINUTES=3 SOAK_SEED=$${SOAK_SEED:-1} $(CARGO) run -q -p iotsub-e2e --bin soak

test: deps lint build unit component interop cluster-test e2e soak-smoke demo-smoke
	@echo "make test: the local cluster's node was $$(cat $${LOCALKUBE_DIR:-target/localkube}/run/node-agent 2>/dev/null || echo unknown) (LOCALKUBE_NODE_AGENT=kubelet|lk-agent)"

## The system on this machine as a user installs it: the local control plane, the emulator, the
## chart (helm), examples/quickstart.yaml, device traffic with bursts, a live view until Ctrl-C;
## then everything it started is removed.
demo:
	scripts/demo.sh

## The demo for 20 s, failing unless the workers acknowledged messages (part of `make test`).
demo-smoke:
	DEMO_SECONDS=20 scripts/demo.sh

## Without Kubernetes (no Go needed): the emulator, device traffic and one worker process.
demo-local:
	scripts/demo-local.sh

## The worker beside the platform's official sample consumers (Qpid JMS, Qpid Proton); ~8 minutes.
bench-samples: build-release deps
	$(PYTHON) bench/compare.py --out docs/samples-comparison.json && $(PYTHON) bench/chart.py

## The worker's HTTP sink into the business-server stand-in at 0, 1 and 20 ms service time; ~10 minutes.
bench-http:
	$(CARGO) build --release -p iotsub-emulator -p iotsub-worker -p iotsub-standin --bins
	$(PYTHON) bench/http_sink.py --out docs/http-sink.json

## The http sink's modes at 1 ms service time: one POST per message over HTTP/1.1 or HTTP/2, and the
## batched mode over each, alternating (docs/http-sink-modes.json); ~4 minutes.
bench-http-modes:
	$(CARGO) build --release -p iotsub-emulator -p iotsub-worker -p iotsub-standin --bins
	$(PYTHON) bench/http_sink.py --service-times 1 --rounds 2 --out docs/http-sink-modes.json \
	  --variants "binary=;http2=--sink-protocol=http2;batch=--sink-mode=batch;batch-http2=--sink-mode=batch --sink-protocol=http2"

## The worker's http sink vs the Java sample with java.net.http and Apache Camel (camel-amqp →
## vertx-http), alternating, at 0, 1 and 20 ms; ~20 minutes; Maven builds the peers on first use.
bench-http-peers:
	$(CARGO) build --release -p iotsub-emulator -p iotsub-worker -p iotsub-standin --bins
	$(PYTHON) bench/http_peers.py --out docs/http-peers.json --svg docs/http-peers.svg

## The worker's own send → accept latency at 1 000 msg/s (log sink); WORKERS="a=path b=path" compares builds.
bench-latency:
	$(CARGO) build --release -p iotsub-emulator -p iotsub-worker --bins
	$(PYTHON) bench/latency.py $(foreach w,$(or $(WORKERS),current=target/release/iotsub-worker),--worker $(w))

bench-emulator: build-release
	$(CARGO) run --release -p iotsub-tests --bin bench-emulator

## Container images iotsub-operator, iotsub-worker, iotsub-emulator (docs/images.md): release
## binaries on a base assembled from Debian packages (no registry needed), tagged
## <crate version> and <git short commit>. REGISTRY=host/path prefixes the names; BASE=… swaps the
## base (e.g. gcr.io/distroless/cc-debian12:nonroot); ENGINE=podman|docker.
images: container-tools
	images/build.sh

## Pushes both tags of the three images to REGISTRY (after `make images REGISTRY=…`).
images-push:
	images/push.sh

## Runs the built images (not part of `make test`: it needs release builds and a container engine).
images-test: container-tools
	images/test.sh

clean:
	$(CARGO) clean

-include tests/cluster/cluster.mk
