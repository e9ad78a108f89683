# kombu-go developer commands. Nothing here needs a global install: buf is
# built from the pinned tools module into .tmp/bin, and the protoc plugins
# run with `go run` from this module.

SHELL := /bin/bash
BIN   := $(CURDIR)/.tmp/bin
BUF   := $(BIN)/buf
STATICCHECK := $(BIN)/staticcheck
GO    ?= go
# Every Go module in this repository, named once: adding a module is one word here.
# A nested module's go.mod replaces the root module with its relative path. make lint and
# make check-generate cover every module (tools holds only the pinned tools' imports:
# nothing to vet); make test runs the tests of every module but chaos (its fault suite
# stops the brokers: make chaos runs it alone).
MODULES      := . bench chaos tools transports/sqldb transports/gcpubsub transports/azurequeues transports/sqs transports/mongodb otelkombu transports/kafka transports/kafka/kafkatest transports/nats cmd/kombu
CODE_MODULES := $(filter-out tools,$(MODULES))
TEST_MODULES := $(filter-out chaos,$(CODE_MODULES))

.PHONY: all generate check-generate build test demo bench lint chaos clean cluster-up cluster-down

all: build test

# Tools are pinned by tools/go.mod; rebuilt only when the pins change.
$(BUF): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf
$(STATICCHECK): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ honnef.co/go/tools/cmd/staticcheck

GENERATED := gen cmd/protoc-gen-kombu/internal/testgen cmd/protoc-gen-kombu/testdata bench/gen

## generate: regenerate gen/, the plugin's test packages and its golden descriptor set, and
## the benchmark's stubs (bench/gen)
generate: $(BUF)
	$(BUF) generate
	$(BUF) generate --template bench/buf.gen.yaml
	$(BUF) generate --template cmd/protoc-gen-kombu/testdata/buf.gen.yaml
	$(BUF) build cmd/protoc-gen-kombu/testdata/proto --as-file-descriptor-set \
		-o cmd/protoc-gen-kombu/testdata/kombutest.binpb

## check-generate: fail if gen/ differs from what `make generate` writes, or if a module's
## go.mod or go.sum differs from what `go mod tidy` writes
check-generate: generate
	@changes=$$(git status --porcelain -- $(GENERATED)); \
	if [ -n "$$changes" ]; then \
		echo "generated files are stale; run 'make generate' and commit:"; echo "$$changes"; \
		git --no-pager diff --stat -- $(GENERATED); exit 1; \
	fi; echo "gen/ is up to date"
	@for m in $(MODULES); do \
		(cd $$m && $(GO) mod tidy -diff >/dev/null) || { echo "$$m: go.mod/go.sum not tidy; run 'go mod tidy' there"; exit 1; }; \
	done; echo "go.mod files are tidy: $(MODULES)"

## build: compile every package and the plugin
build:
	$(GO) build ./...

## test: vet, then every test with the race detector, then the allocation budgets
## (*_alloc_test.go) without it: the race detector changes allocation counts
test:
	@for m in $(TEST_MODULES); do echo "test $$m/"; \
		(cd $$m && $(GO) vet ./... && $(GO) test -race -count=1 ./... && \
		$(GO) test -count=1 -run 'Allocs$$' ./...) || exit 1; done

## demo: run the quickstart on the in-process broker (or on $KOMBU_URL; a SQL URL such as
## sqlite:////tmp/shop.db runs it from transports/sqldb, which links the SQL transport in)
demo:
	@case "$$KOMBU_URL" in \
	sqla+*|sqlalchemy+*|postgres://*|postgresql://*|mysql://*|sqlite://*) \
		cd transports/sqldb && $(GO) run ./examples/quickstart ;; \
	*) $(GO) run ./examples/quickstart ;; \
	esac

# BENCH_FLAGS passes flags to the harness: -short for a quick check (under two minutes,
# rougher figures), -transports memory,amqp to pick transports, -run to pick workloads,
# -v for each round's figures (cd bench && go run . -h lists them all).
BENCH_FLAGS ?=

## bench: per transport and workload, the SDK at its defaults and tuned beside the bare client,
## Watermill and Python Kombu, in one run, with ratios, allocations and CPU per message (bench/,
## its own module); then the SDK's own cost per publish and per codec on a 1 KiB message
bench:
	cd bench && $(GO) run . $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench 'BenchmarkCodecs|BenchmarkPublishOverhead' -benchmem \
		$(if $(filter -short,$(BENCH_FLAGS)),-benchtime 100ms) ./runtime/ ./runtime/codec/

## chaos: the fault-injection suite (chaos/, its own module): toxiproxy, rabbitmqctl and redis-cli faults
## with a Jepsen-style checker. It stops and alarms the brokers: run it alone. KOMBU_CHAOS_FIGURES=1 rewrites
## chaos/FIGURES.md.
chaos:
	cd chaos && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

## lint: gofmt, vet, staticcheck (generated code included), buf lint and buf format
lint: $(BUF) $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@for m in $(CODE_MODULES); do echo "lint $$m/"; \
		(cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...) || exit 1; done
	$(BUF) lint
	$(BUF) format -d --exit-code .

## cluster-up / cluster-down: both local clusters, to try kombu-go on them:
## - a three-node RabbitMQ cluster on this host (kc1..kc3@localhost, AMQP on 5681-5683;
##   scripts/rabbitmq-cluster.sh), beside any RabbitMQ already running; the cluster tests
##   (transports/amqp TestCluster*, chaos TestAMQPCluster*) use it;
## - a Redis Cluster (3 masters, 3 replicas, ports 7100-7105, data in .tmp/redis-cluster;
##   scripts/redis-cluster.sh), whose redis+cluster:// URL it prints (the Redis cluster tests
##   start clusters of their own).
## rabbitmq-cluster-up/-down and redis-cluster-up/-down do one each.
.PHONY: cluster-up cluster-down rabbitmq-cluster-up rabbitmq-cluster-down redis-cluster-up redis-cluster-down
cluster-up: rabbitmq-cluster-up redis-cluster-up
cluster-down: rabbitmq-cluster-down redis-cluster-down
rabbitmq-cluster-up:
	scripts/rabbitmq-cluster.sh up
rabbitmq-cluster-down:
	scripts/rabbitmq-cluster.sh down
redis-cluster-up:
	scripts/redis-cluster.sh up
redis-cluster-down:
	scripts/redis-cluster.sh down

clean:
	rm -rf .tmp

