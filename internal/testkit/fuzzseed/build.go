package fuzzseed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Modes returns the builds Build makes: default, linked with -s -w, PIE,
// and with cgo (external linking: runtime.text is not where .text starts).
func Modes() []string { return []string{"default", "stripped", "pie", "cgo"} }

// Keep selects the functions a cut keeps: package main's, and a few of the
// runtime and package context with inline trees, generic shapes and calls.
func Keep(name string) bool {
	switch name {
	case "context.WithValue", "context.(*valueCtx).Value", "context.value",
		"runtime.main", "runtime.newproc", "runtime.goexit1", "internal/abi.(*Type).Uncommon":
		return true
	}
	return strings.HasPrefix(name, "main.")
}

// program has what the parsers look for: a function taking a context
// (DWARF parameters), a type used as a context key, a goroutine, inlined
// calls (inline trees), and with cgo a C function.
const program = `package main

import (
	"context"
	"os"
)

type traceKey struct{}

type span struct {
	id     [16]byte
	parent *span
	name   string
}

func (s *span) root() bool { return s.parent == nil }

//go:noinline
func work(ctx context.Context, n int) int {
	if s, ok := ctx.Value(traceKey{}).(*span); ok && !s.root() {
		return n + len(s.name)
	}
	return n
}

func main() {
	ctx := context.WithValue(context.Background(), traceKey{}, &span{name: "a", parent: &span{}})
	done := make(chan int)
	go func() { done <- work(ctx, 1) }()
	if <-done != 2 {
		os.Exit(1)
	}
}
`

const cgoFile = `//go:build cgo

package main

// static int one(void) { return 1; }
import "C"

func init() { _ = C.one() }
`

// Build writes the seed program into dir and builds it in mode (one of
// Modes) for linux/goarch with the go command in PATH, returning the
// binary's path.
func Build(dir, mode, goarch string) (string, error) {
	files := map[string]string{
		"go.mod":  "module example.com/seed\n\ngo 1.21\n",
		"main.go": program,
		"cgo.go":  cgoFile,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return "", fmt.Errorf("write seed program: %w", err)
		}
	}
	out := filepath.Join(dir, "seed-"+goarch+"-"+mode)
	args := []string{"build", "-o", out}
	cgo := "CGO_ENABLED=0"
	switch mode {
	case "stripped":
		args = append(args, "-ldflags=-s -w")
	case "pie":
		args = append(args, "-buildmode=pie")
	case "cgo":
		cgo = "CGO_ENABLED=1"
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), cgo, "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v (%s): %w\n%s", args, mode, err, msg)
	}
	return out, nil
}
