package target

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// probeSource is the program the tests build and inspect.
const probeSource = `package main

import (
	"context"
	"fmt"
	"unsafe"
)

type traceKey struct{}

type srv struct{ n int }

//go:noinline
func work(ctx context.Context, n int) int { return n + len(fmt.Sprint(ctx)) }

//go:noinline
func (s *srv) handle(id int, ctx context.Context) int { return id + s.n + len(fmt.Sprint(ctx)) }

//go:noinline
func named(name string, ctx context.Context) int { return len(name) + len(fmt.Sprint(ctx)) }

//go:noinline
func batch(ids []int, ctx context.Context) int { return len(ids) + len(fmt.Sprint(ctx)) }

//go:noinline
func scaled(f float64, ctx context.Context) int { return int(f) + len(fmt.Sprint(ctx)) }

func main() {
	ctx := context.WithValue(context.Background(), traceKey{}, "v")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fmt.Sprint(cctx)
	var x any = ctx
	fmt.Printf("%x\n", *(*[2]uintptr)(unsafe.Pointer(&x)))
	var k any = traceKey{}
	fmt.Printf("%x\n", *(*[2]uintptr)(unsafe.Pointer(&k)))
	s := &srv{}
	fmt.Println(work(ctx, 1), s.handle(2, ctx), named("a", ctx), batch(nil, ctx), scaled(1, ctx))
}
`

// Build modes of the probe program.
const (
	modeDefault  = "default"
	modeStripped = "stripped"
	modePIE      = "pie"
	modeARM64    = "arm64"

	modeARM64Stripped = "arm64-stripped"
)

var modeFlags = map[string][]string{
	modeDefault:  nil,
	modeStripped: {"-ldflags=-s -w"},
	modePIE:      {"-buildmode=pie"},
	modeARM64:    nil,

	modeARM64Stripped: {"-ldflags=-s -w"},
}

// builds caches one build per mode for the whole test binary.
var builds struct {
	sync.Mutex
	dir  string
	bins map[string]string
	errs map[string]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	seeds.Close()
	os.Exit(code)
}

// goTool returns the go command from PATH or skips the test.
func goTool(t *testing.T) string {
	t.Helper()
	g, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	return g
}

func goEnv(t *testing.T, extra ...string) []string {
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	return append(env, extra...)
}

// probe builds the probe program in the given mode (once) and returns its path.
func probe(t *testing.T, mode string) string {
	t.Helper()
	g := goTool(t)
	builds.Lock()
	defer builds.Unlock()
	if p, ok := builds.bins[mode]; ok {
		return p
	}
	if msg, ok := builds.errs[mode]; ok {
		t.Fatal(msg)
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "ctxwatch-target-test")
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]string{
			"go.mod":  "module example.com/probe\n\ngo 1.21\n",
			"main.go": probeSource,
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		builds.dir = dir
		builds.bins = make(map[string]string)
		builds.errs = make(map[string]string)
	}
	out := filepath.Join(builds.dir, "probe-"+mode)
	args := append([]string{"build", "-o", out}, modeFlags[mode]...)
	args = append(args, ".")
	cmd := exec.Command(g, args...)
	cmd.Dir = builds.dir
	cmd.Env = goEnv(t, "GOOS=linux", "GOARCH=amd64")
	if mode == modeARM64 || mode == modeARM64Stripped {
		cmd.Env = goEnv(t, "GOOS=linux", "GOARCH=arm64")
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		builds.errs[mode] = "go " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(msg)
		t.Fatal(builds.errs[mode])
	}
	builds.bins[mode] = out
	return out
}

// openProbe builds and opens the probe in mode.
func openProbe(t *testing.T, mode string) *Binary {
	t.Helper()
	b, err := Open(probe(t, mode))
	if err != nil {
		t.Fatalf("Open(%s build): %v", mode, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// toolchainVersion is `go env GOVERSION`.
func toolchainVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(goTool(t), "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}
	return string(bytes.TrimSpace(out))
}

// fileBytes reads n bytes of the binary at file offset off.
func fileBytes(t *testing.T, b *Binary, off uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(off)); err != nil {
		t.Fatalf("read %s at %#x: %v", b.Path, off, err)
	}
	return buf
}

// byteAt reads the byte of the binary at virtual address addr.
func byteAt(t *testing.T, b *Binary, addr uint64) byte {
	t.Helper()
	off, err := b.FileOffset(addr)
	if err != nil {
		t.Fatal(err)
	}
	return fileBytes(t, b, off, 1)[0]
}
