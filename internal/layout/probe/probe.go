// Package probe builds the small programs whose DWARF gives the struct field
// offsets recorded in package layout. The generator (offsetgen) and the
// layout tests use it, so both measure the same fields the same way.
package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ctxwatch/ctxwatch/internal/target"
)

// Field names a struct field as (*target.Binary).FieldOffset takes it.
type Field struct {
	Type string // e.g. "runtime.g"
	Path string // e.g. "sched.bp"
}

func (f Field) String() string { return f.Type + " " + f.Path }

// RuntimeFields are the Go runtime and package context fields ctxwatch
// reads. runtime.g.parentGoid exists only from Go 1.21 on; sched.ctxt is
// the closure a new goroutine runs (AfterFunc work is known by it).
var RuntimeFields = []Field{
	{"runtime.g", "goid"},
	{"runtime.g", "m"},
	{"runtime.g", "sched.bp"},
	{"runtime.g", "sched.ctxt"},
	{"runtime.g", "gopc"},
	{"runtime.g", "parentGoid"},
	{"runtime.m", "curg"},
	{"context.cancelCtx", "err"},
	// Channels, for lost-at-handoff: where a sent element goes (a waiting
	// receiver, a buffer slot, or the sender waits) and which one a
	// receive takes.
	{"runtime.hchan", "qcount"},
	{"runtime.hchan", "dataqsiz"},
	{"runtime.hchan", "buf"},
	{"runtime.hchan", "elemsize"},
	{"runtime.hchan", "closed"},
	{"runtime.hchan", "sendx"},
	{"runtime.hchan", "recvx"},
	{"runtime.hchan", "recvq.first"},
	{"runtime.hchan", "sendq.first"},
	{"runtime.sudog", "g"},
	{"runtime.sudog", "elem"},
	// From Go 1.26 elem is a maybeTraceablePtr whose vu is the source of
	// truth (vp may be cleared for the garbage collector).
	{"runtime.sudog", "elem.vu"},
	{"runtime.sudog", "isSelect"},
	// What bpf/goabi.h assumes without being told (internal/uprobe's
	// runtimeAssumptions): measured per release, so that a release the
	// table knows needs no DWARF to check them.
	{"context.valueCtx", "Context"},
	{"context.valueCtx", "key"},
	{"context.valueCtx", "val"},
	{"context.cancelCtx", "Context"},
	{"context.timerCtx", "cancelCtx"},
	{"runtime.itab", "_type"},
	{"internal/abi.ITab", "Type"},
	{"runtime.funcval", "fn"},
	{"string", "len"},
	// Multi-case select: set once some case has won the select (uint32,
	// atomic.Uint32 from Go 1.20), which the runtime's dequeue passes over.
	{"runtime.g", "selectDone"},
}

// OTelFields are the OpenTelemetry Go fields ctxwatch reads.
var OTelFields = []Field{
	{"go.opentelemetry.io/otel/sdk/trace.recordingSpan", "spanContext"},
	{"go.opentelemetry.io/otel/sdk/trace.recordingSpan", "parent"},
	{"go.opentelemetry.io/otel/sdk/trace.recordingSpan", "endTime"},
	{"go.opentelemetry.io/otel/trace.nonRecordingSpan", "sc"},
	{"go.opentelemetry.io/otel/sdk/trace.nonRecordingSpan", "sc"},
	{"go.opentelemetry.io/otel/trace.SpanContext", "traceID"},
	{"go.opentelemetry.io/otel/trace.SpanContext", "spanID"},
}

// Module paths of the OTel probe's requirements.
const (
	OTelSDK   = "go.opentelemetry.io/otel/sdk"
	OTelTrace = "go.opentelemetry.io/otel/trace"
)

// GoMinor returns the minor number of a release version "go1.N" or
// "go1.N.M" (not rc, beta, devel or with experiments).
func GoMinor(v string) (int, bool) {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return 0, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) > 2 {
		return 0, false
	}
	var nums []int
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || p == "" || p[0] == '+' || p[0] == '-' || (len(p) > 1 && p[0] == '0') {
			return 0, false
		}
		nums = append(nums, n)
	}
	return nums[0], true
}

// RuntimeSource returns the runtime probe program for Go 1.minor: it uses
// the context constructors that version has, so that their types are in
// the binary's DWARF.
func RuntimeSource(minor int) string {
	var b strings.Builder
	b.WriteString(`package main

import (
	"context"
	"fmt"
	"time"
)

type key struct{}

func main() {
	ctx := context.WithValue(context.Background(), key{}, "v")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tctx, tcancel := context.WithTimeout(cctx, time.Hour)
	defer tcancel()
	fmt.Println(tctx.Err(), tctx.Value(key{}))
`)
	if minor >= 21 {
		b.WriteString(`	stop := context.AfterFunc(tctx, func() {})
	defer stop()
	fmt.Println(context.WithoutCancel(tctx).Err())
`)
	}
	b.WriteString(`	done := make(chan struct{})
	go func() { fmt.Println(ctx.Value(key{})); close(done) }()
	<-done
}
`)
	return b.String()
}

// OTelSource is the OTel probe program: it creates a recording span with
// the SDK, a non-recording span from a remote span context, and the SDK's
// own non-recording span (a trace its sampler drops).
const OTelSource = `package main

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("probe").Start(context.Background(), "op")
	span.End()
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	rctx := trace.ContextWithRemoteSpanContext(ctx, sc)
	fmt.Println(trace.SpanFromContext(rctx).SpanContext().TraceID(), span.SpanContext().SpanID())
	_ = tp.Shutdown(ctx)
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	_, dropped := never.Tracer("probe").Start(rctx, "dropped")
	fmt.Println(dropped.IsRecording())
}
`

// env returns the environment for a go command: toolchain is a GOTOOLCHAIN
// value ("local", "go1.21.13", ...). Modules resolve freely (-mod=mod) and
// cgo is off. Go 1.16 and 1.17 ignore the go env file, whose GOFLAGS may
// hold flags they do not know.
func env(toolchain, goarch string) []string {
	e := os.Environ()
	out := e[:0:0]
	for _, kv := range e {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOTOOLCHAIN", "GOFLAGS", "CGO_ENABLED", "GOOS", "GOARCH", "GOENV", "GOEXPERIMENT":
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "GOTOOLCHAIN="+toolchain, "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if m, ok := GoMinor(toolchain); ok && m < 18 {
		out = append(out, "GOENV=off")
	}
	return out
}

// run runs the go command in dir and returns an error with its output.
func run(ctx context.Context, dir, toolchain, goarch string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = env(toolchain, goarch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("GOTOOLCHAIN=%s go %s: %v\n%s", toolchain, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BuildRuntime writes the runtime probe into dir (a new, empty directory)
// and builds it, with DWARF, using toolchain ("go1.21.13", or "local").
// minor selects the source (see RuntimeSource). It returns the binary's path.
func BuildRuntime(ctx context.Context, dir, toolchain string, minor int) (string, error) {
	return BuildRuntimeArch(ctx, dir, toolchain, "amd64", minor)
}

// BuildRuntimeArch is BuildRuntime for goarch (the tables are measured on
// amd64; their tests check that arm64 lays the same structs out alike).
func BuildRuntimeArch(ctx context.Context, dir, toolchain, goarch string, minor int) (string, error) {
	goMod := "module example.com/probe\n\ngo 1.17\n"
	if err := writeFiles(dir, goMod, RuntimeSource(minor)); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "probe")
	if err := run(ctx, dir, toolchain, goarch, "build", "-o", bin, "."); err != nil {
		return "", err
	}
	return bin, nil
}

// BuildOTel writes the OTel probe into dir (a new, empty directory), requires
// the SDK and trace modules at version, optionally starting from goSum (a
// go.sum to seed, may be empty), and builds it with DWARF using toolchain.
// If the modules demand a newer Go than toolchain provides and toolchain is
// "local", it tries once more with GOTOOLCHAIN=auto.
func BuildOTel(ctx context.Context, dir, toolchain, version string, goSum []byte) (string, error) {
	return BuildOTelArch(ctx, dir, toolchain, "amd64", version, goSum)
}

// BuildOTelArch is BuildOTel for goarch.
func BuildOTelArch(ctx context.Context, dir, toolchain, goarch, version string, goSum []byte) (string, error) {
	goMod := "module example.com/probe\n\ngo 1.20\n"
	if err := writeFiles(dir, goMod, OTelSource); err != nil {
		return "", err
	}
	if len(goSum) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "go.sum"), goSum, 0o644); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(dir, "probe")
	build := func(tc string) error {
		if err := run(ctx, dir, tc, goarch, "get", OTelSDK+"@"+version, OTelTrace+"@"+version); err != nil {
			return err
		}
		return run(ctx, dir, tc, goarch, "build", "-o", bin, ".")
	}
	err := build(toolchain)
	if err != nil && toolchain == "local" && strings.Contains(err.Error(), "requires go >=") {
		err = build("auto")
	}
	if err != nil {
		return "", err
	}
	return bin, nil
}

func writeFiles(dir, goMod, src string) error {
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
}

// ModuleVersion returns the version of module path in the binary's build
// info, or "".
func ModuleVersion(b *target.Binary, path string) string {
	for _, m := range b.Modules {
		if m.Path == path {
			return m.Version
		}
	}
	return ""
}

// Measure reads the offsets of fields from b's DWARF. Fields the binary's
// types do not have (target.ErrNoSymbol) are returned in absent; any other
// failure, such as missing DWARF, is an error.
func Measure(b *target.Binary, fields []Field) (offsets map[Field]uint64, absent []Field, err error) {
	offsets = make(map[Field]uint64)
	for _, f := range fields {
		off, err := b.FieldOffset(f.Type, f.Path)
		switch {
		case err == nil:
			offsets[f] = off
		case errors.Is(err, target.ErrNoSymbol):
			absent = append(absent, f)
		default:
			return nil, nil, err
		}
	}
	return offsets, absent, nil
}
