# kombu-go developer commands. Nothing here needs a global install: buf is
# built from the pinned tools module into .tmp/bin, and the protoc plugins
# run with `go run` from this module.

SHELL := /bin/bash
BIN   := $(CURDIR)/.tmp/bin
BUF   := $(BIN)/buf
STATICCHECK := $(BIN)/staticcheck
GO    ?= go

.PHONY: all generate check-generate build test demo bench lint chaos clean

all: build test

# Tools are pinned by tools/go.mod; rebuilt only when the pins change.
$(BUF): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf
$(STATICCHECK): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ honnef.co/go/tools/cmd/staticcheck

GENERATED := gen cmd/protoc-gen-kombu/internal/testgen cmd/protoc-gen-kombu/testdata

## generate: regenerate gen/, the plugin's test packages and its golden descriptor set
generate: $(BUF)
	$(BUF) generate
	$(BUF) generate --template cmd/protoc-gen-kombu/testdata/buf.gen.yaml
	$(BUF) build cmd/protoc-gen-kombu/testdata/proto --as-file-descriptor-set \
		-o cmd/protoc-gen-kombu/testdata/kombutest.binpb

## check-generate: fail if gen/ differs from what `make generate` writes
check-generate: generate
	@changes=$$(git status --porcelain -- $(GENERATED)); \
	if [ -n "$$changes" ]; then \
		echo "generated files are stale; run 'make generate' and commit:"; echo "$$changes"; \
		git --no-pager diff --stat -- $(GENERATED); exit 1; \
	fi; echo "gen/ is up to date"

## build: compile every package and the plugin
build:
	$(GO) build ./...

## test: vet, then every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## demo: run the quickstart on the in-process broker (or on $KOMBU_URL)
demo:
	$(GO) run ./examples/quickstart

BENCH_TRANSPORTS ?= amqp,redis

## bench: the SDK beside the bare clients and Python Kombu on the real brokers, as
## ratios; then encode+compress / decompress+decode per codec on a 1 KiB message
bench:
	$(GO) run ./internal/bench -transports $(BENCH_TRANSPORTS)
	$(GO) test -run '^$$' -bench 'BenchmarkCodecs|BenchmarkPublishOverhead' -benchmem ./runtime/ ./runtime/codec/

## chaos: the fault-injection suite (chaos/, its own module): toxiproxy, rabbitmqctl and redis-cli faults
## with a Jepsen-style checker. It stops and alarms the brokers: run it alone. KOMBU_CHAOS_FIGURES=1 rewrites
## chaos/FIGURES.md.
chaos:
	cd chaos && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

## lint: gofmt, vet, staticcheck (generated code included), buf lint and buf format
lint: $(BUF) $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	cd chaos && $(GO) vet ./... && $(STATICCHECK) ./...
	$(BUF) lint
	$(BUF) format -d --exit-code .

clean:
	rm -rf .tmp
