# ctxwatch. Targets that attach probes need root: run them with sudo.
GO ?= go
BIN := bin

.PHONY: all build demo test test-host test-deploy container-test unit integration bench generate layouts clean compat jaeger vmtest vmtest-ci vmtest-arm64 jaeger-arm64 soak fuzz fuzz-ci realprograms screenshot

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

# The README's picture of the report page (docs/report.png): the demo's
# examples under ctxwatch --html, shot with headless Chromium (root).
screenshot: build
	scripts/screenshot.sh

# What CI runs (.ci/run): every test on this kernel, the real programs
# (built once into the cache, then minutes), then the eBPF side on Linux
# 5.10 in a VM (make vmtest-ci). Needs apt-get install tmux qemu-system-x86
# busybox-static chromium prometheus podman runc.
test: test-host fuzz-ci realprograms vmtest-ci

# Every test on this kernel: unit tests and the integration tests (real
# uprobes: root). The export test needs Jaeger (make jaeger: built once,
# then cached). The compat matrix runs four toolchains here
# (integration/compat_test.go).
test-host: jaeger test-deploy
	$(GO) test -count=1 -timeout 30m ./...

# The Kubernetes manifests, the Helm chart and the image's Dockerfile
# (deploy/): a module of its own, which keeps the Kubernetes and Helm
# libraries out of go.mod. No cluster, no docker. As root it also runs
# make container-test's TestContainer (podman and runc: about 30 seconds);
# without root that one skips.
test-deploy:
	cd deploy && $(GO) test -count=1 ./...

# The agent's image run in Podman as daemonset.yaml's pod template says
# (hostPID, exactly its capabilities, its seccomp and AppArmor settings, a
# read-only root): it must report the breaks of Go programs started after
# it, on the host and in another container, and stop with one line naming
# a capability taken away (root; apt-get install podman runc).
container-test:
	cd deploy && $(GO) test -count=1 -v -run '^TestContainer$$' .

# Fuzzing of what ctxwatch reads from untrusted sources: the target's ELF
# file, build info, pcln table, moduledata and machine code, and the event
# records of the probes. Each target runs for $(FUZZTIME), one go test per
# target (-fuzz takes one per package); the seed program they cut their
# seeds from is built once for all in a shared directory. Minimizing every
# new input would take most of a short run, hence -fuzzminimizetime 1x. A
# failing input is written to the package's testdata/fuzz/FuzzX/.
FUZZTIME ?= 30s
FUZZ_TARGETS := internal/event:FuzzDecode internal/pcln:FuzzPclntab internal/pcln:FuzzModuledata \
	internal/target:FuzzInspect internal/target:FuzzBuildInfo internal/target:FuzzCode internal/target:FuzzDWARF
fuzz:
	set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		CTXWATCH_FUZZSEED_DIR="$$d" $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" \
			-fuzztime $(FUZZTIME) -fuzzminimizetime 1x ./$${t%%:*}; \
	done

# What make test runs: each fuzz target for 100,000 inputs (about 1.5 minutes
# in all here, FuzzCode the slowest at 35 s). A count, not a time: a
# wall-clock -fuzztime races Go's fuzzing coordinator, which can fail a
# target with a bare "context deadline exceeded" and no input written when
# the deadline fires while a worker is mid-call (FuzzBuildInfo, once, in a
# loaded .ci/run); a count sets no deadline.
fuzz-ci:
	$(MAKE) fuzz FUZZTIME=100000x

# Without root: inspection, analysis and reports only.
unit:
	$(GO) test -count=1 ./cmd/ctxwatch ./internal/analysis ./internal/budget ./internal/container ./internal/event ./internal/export ./internal/findings ./internal/layout ./internal/pcln ./internal/report ./internal/target ./internal/testkit/... ./integration/internal/...

integration:
	$(GO) test -count=1 -v ./integration

# The target is never harmed: the soak target under ctxwatch for
# $(SOAK_CALLS) probed calls, and under 50 attaches and detaches (root).
# make test-host runs them too, with 10^7 calls.
SOAK_CALLS ?= 10000000
soak:
	CTXWATCH_SOAK_CALLS=$(SOAK_CALLS) $(GO) test -count=1 -v -timeout 3h -run '^(TestSoak|TestSoakAttachDetach)$$' ./integration

# The eBPF side on real kernels: Debian's 5.10, 6.1 and 6.12 booted in qemu
# (KVM if it runs the guest, else TCG), the root tests run in each; a table
# at the end. Kernels are cached in $(CTXWATCH_CACHE)/vmtest. Needs
# apt-get install qemu-system-x86 busybox-static tmux. One kernel:
# make vmtest VMTEST_FLAGS='-kernels 5.10'. One VM at a time: under TCG,
# VMs sharing the cores slow attaching past the tests' 30s waits.
VMTEST_FLAGS ?=
vmtest: jaeger
	$(GO) run ./vmtest $(VMTEST_FLAGS)

# The eBPF side on arm64: Debian's arm64 kernels (6.1, 6.12, the
# -cloud-arm64 flavours) in qemu-system-aarch64's virt board under TCG, one
# vCPU, with Debian's arm64 busybox-static and everything else
# cross-compiled (GOARCH=arm64). Needs apt-get install qemu-system-arm;
# Jaeger for arm64 comes from make jaeger-arm64. Not in make test (see the
# README for its time): run it by hand.
vmtest-arm64: jaeger-arm64
	$(GO) run ./vmtest -arch arm64 $(VMTEST_FLAGS)

# What CI boots: 5.10, the oldest supported kernel (the strictest
# verifier). vmtest's own list (vmSkip in vmtest/main.go) leaves out the
# tests that need what the VM has not (the go command, Chromium, Prometheus)
# and those that count on the host's speed, which TCG divides by ten or
# more; they run on the host in make test-host.
vmtest-ci: jaeger
	$(GO) run ./vmtest -kernels 5.10

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

# Jaeger v2 (collector, memory storage, UI), which integration/export_test.go
# sends break spans to: built from the Go module proxy once (about 10
# minutes on 2 cores, 120 MB) and cached outside the clone.
JAEGER_VERSION := v1.76.0
CTXWATCH_CACHE ?= /var/cache/ctxwatch
JAEGER := $(CTXWATCH_CACHE)/jaeger-$(JAEGER_VERSION)/jaeger

jaeger: $(JAEGER)

$(JAEGER):
	mkdir -p $(dir $@)
	set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; cd "$$d"; \
	$(GO) mod init x >/dev/null 2>&1; \
	$(GO) get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$(JAEGER_VERSION); \
	$(GO) build -o $@.tmp github.com/jaegertracing/jaeger/cmd/jaeger
	mv $@.tmp $@

# Jaeger for arm64 guests (vmtest -arch arm64), cross-compiled once into
# its GOOS_GOARCH directory beside the host's build.
JAEGER_ARM64 := $(CTXWATCH_CACHE)/jaeger-$(JAEGER_VERSION)/linux_arm64/jaeger

jaeger-arm64: $(JAEGER_ARM64)

$(JAEGER_ARM64):
	mkdir -p $(dir $@)
	set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; cd "$$d"; \
	$(GO) mod init x >/dev/null 2>&1; \
	$(GO) get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$(JAEGER_VERSION); \
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o $@.tmp github.com/jaegertracing/jaeger/cmd/jaeger
	mv $@.tmp $@

# Real programs (root): OpenTelemetry-instrumented services that this team
# did not write (HotROD, Jaeger itself, Caddy, Centrifugo, and SpiceDB
# before and after the fix of a real trace break), built once from the Go
# module proxy at pinned versions into $(CTXWATCH_CACHE)/realprog/ (a
# first build takes minutes, SpiceDB's 5: hence the timeout), driven with real
# requests, without ctxwatch and under it; Jaeger (make jaeger) is the
# referee of every split trace (docs/realprograms.md). Behind the build tag
# realprograms, so that go test ./... compiles none of it; make test runs it
# as a step of its own.
realprograms: jaeger
	$(GO) test -tags realprograms -count=1 -timeout 60m -run 'TestReal' -v ./integration

# The compatibility matrix on every toolchain, Go 1.17 to 1.27 (root;
# fetches the toolchains through the module proxy the first time), written
# to docs/compatibility.md.
compat:
	CTXWATCH_COMPAT=all CTXWATCH_COMPAT_DOC=$(CURDIR)/docs/compatibility.md $(GO) test -count=1 -timeout 90m -run '^TestCompat$$' ./integration
