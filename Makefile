# inferd — make setup | make test | make run
SHELL := /bin/bash
GPU ?= 0
GO ?= go
export INFERD_ORT_LIB ?= $(CURDIR)/.deps/ort/libonnxruntime.so.1
export INFERD_CACHE ?= $(HOME)/.cache/inferd

# Packages whose code is concurrent run under the race detector too.
RACE_PKGS := $(patsubst %,./%/...,$(wildcard auth batcher budget gpu host respcache server register tlscert loadtest cmd/loadtest))

.PHONY: setup test test-short vet bench build run fuzz

# Fuzz targets that face the network, each run for FUZZTIME by `make test`;
# their corpora live in each package's testdata/fuzz.
FUZZTIME ?= 10s
FUZZ_TARGETS := kserve:FuzzParseInferRequest kserve:FuzzParseFP32 preprocess:FuzzProcess server:FuzzDecodeBody auth:FuzzKey server:FuzzGRPCInferRequest

# Arguments for `make run`, e.g. make run ARGS="-config configs/inferd.yaml".
ARGS ?=

## setup: install ONNX Runtime (and with GPU=1 its CUDA provider) into .deps/
TOOLS ?= 1
setup:
	GPU=$(GPU) TOOLS=$(TOOLS) scripts/setup.sh

build:
	$(GO) build -o bin/ ./cmd/...

## run: set up, build, and serve the generated ResNet50 on :8000 (foreground)
run: TOOLS = 0
run: setup build
	bin/inferd $(ARGS)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

## test: setup, then the whole suite (real ONNX Runtime, real services)
test: GPU = 1
test: export INFERD_REQUIRE_TOOLS = 1
test: setup vet
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /attack -e /bench/gpu)
	@# The attack suite measures a real server's memory and its shedding
	@# under overload: it runs alone, not beside other packages' tests.
	$(GO) test -count=1 ./attack/
	@# The GPU visit's packing and its dry run on this CPU (bench/gpu): a
	@# heavy build, kept apart from the timing-sensitive suites.
	$(GO) test -count=1 ./bench/gpu/...
	$(GO) test -count=1 -race $(RACE_PKGS)
	$(GO) test -count=1 -tags nojpegturbo ./preprocess/
	$(MAKE) --no-print-directory fuzz

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./$$pkg/ | tail -1; \
	done

## test-short: the fast unit tests only
test-short: setup
	$(GO) test -short -count=1 ./...

## bench: the scoreboard, bench/README.md, from one run here (about 15 min)
bench: setup
	bench/run.sh

.PHONY: cluster cluster-down demo
## cluster: Consul, 3 replicas (MODEL=resnet50 for the real model), HAProxy
## and Prometheus on loopback (PORT_BASE=18500); prints their URLs
cluster: setup build
	MODEL=$(or $(MODEL),tiny) scripts/cluster.sh up

## cluster-down: stop what `make cluster` started
cluster-down:
	scripts/cluster.sh down

## demo: the cluster, a 15 s load test through HAProxy with its report, down
demo: setup build
	MODEL=$(or $(MODEL),tiny) scripts/cluster.sh demo
