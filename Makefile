# ctxwatch. Targets that attach probes need root: run them with sudo.
GO ?= go
BIN := bin

.PHONY: all build demo test unit integration bench generate layouts clean

all: build

build:
	$(GO) build -o $(BIN)/ctxwatch ./cmd/ctxwatch

# The main job on the bundled examples: an OTel-instrumented HTTP service
# whose handler starts a span on Background in a goroutine, and a server
# whose middleware rebuilds the request context from Background.
demo: build
	$(GO) build -trimpath -o $(BIN)/ ./examples/otelhttp ./examples/middleware
	$(BIN)/ctxwatch -- $(BIN)/otelhttp
	$(BIN)/ctxwatch --trace-key type=main.traceKey -- $(BIN)/middleware

# Everything: unit tests and the integration tests (real uprobes: root).
test:
	$(GO) test -count=1 ./...

# Without root: inspection, analysis and reports only.
unit:
	$(GO) test -count=1 ./internal/analysis ./internal/event ./internal/pcln ./internal/report ./internal/target ./internal/layout

integration:
	$(GO) test -count=1 -v ./integration

# Cost of the probes in a target: a markdown table (see docs/performance.md).
bench:
	$(GO) run ./bench -out docs/performance.md

# Regenerate the eBPF objects (Debian: apt-get install clang libbpf-dev).
generate:
	$(GO) generate ./bpf

clean:
	rm -rf $(BIN)

# Re-measure the offset tables for binaries without DWARF (downloads every
# Go toolchain of internal/layout/offsetgen's list: minutes).
layouts:
	$(GO) run ./internal/layout/offsetgen -out internal/layout/table.go
