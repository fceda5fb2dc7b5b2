package target

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorrupt: a Go binary whose .gopclntab is damaged is refused with
// ErrCorrupt (not taken for another kind of program, and no panic), and
// the error names the file. The damage is what a bad copy or patch does:
// the magic, the header's pointer size, a header offset or the function
// count out of range, the file cut in the middle of the table.
func TestCorrupt(t *testing.T) {
	src := probe(t, modeDefault)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	sec := ef.Section(".gopclntab")
	ef.Close()
	if sec == nil {
		t.Fatal("probe has no .gopclntab")
	}
	off := sec.Offset
	le := binary.LittleEndian
	for _, c := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { le.PutUint32(b[off:], 0xdeadbeef); return b }},
		{"pointer size", func(b []byte) []byte { b[off+7] = 4; return b }},
		// Header words: nfunc at 8, funcnametab offset at 32 (Go 1.20+).
		{"nfunc", func(b []byte) []byte { le.PutUint64(b[off+8:], 1<<40); return b }},
		{"funcname offset", func(b []byte) []byte { le.PutUint64(b[off+32:], sec.Size+1); return b }},
		{"truncated", func(b []byte) []byte { return b[:off+sec.Size/2] }},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "damaged")
			if err := os.WriteFile(path, c.damage(append([]byte(nil), data...)), 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := Open(path)
			if err == nil {
				b.Close()
				t.Fatal("Open accepted a damaged pclntab")
			}
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotGo) {
				t.Errorf("Open: %v; want ErrCorrupt and not ErrNotGo", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v; want the file named", err)
			}
		})
	}
}

// inlineSource has a function the compiler inlines at its only call, one it
// may not inline, and nothing named main.nosuch.
const inlineSource = `package main

import "os"

func double(x int) int { return 2 * x }

//go:noinline
func kept(x int) int { return x + 1 }

func main() { os.Exit(kept(double(len(os.Args))) - 5) }
`

// TestMissingFunc: a function that is in the source but was inlined
// everywhere is told apart from one that is not in the binary at all, and
// the functions it went into are named, stripped or not.
func TestMissingFunc(t *testing.T) {
	g := goTool(t)
	dir := t.TempDir()
	for name, text := range map[string]string{"go.mod": "module example.com/inl\n\ngo 1.21\n", "main.go": inlineSource} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []string{modeDefault, modeStripped} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(dir, "inl-"+mode)
			cmd := exec.Command(g, append(append([]string{"build", "-o", out}, modeFlags[mode]...), ".")...)
			cmd.Dir, cmd.Env = dir, goEnv(t, "GOOS=linux", "GOARCH=amd64")
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, msg)
			}
			b, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := b.Func("main.kept"); err != nil {
				t.Fatalf("main.kept (noinline): %v", err)
			}
			if _, err := b.Func("main.double"); err == nil {
				t.Fatal("main.double has a function of its own: the test needs it inlined")
			}
			err = b.MissingFunc("main.double")
			if !errors.Is(err, ErrInlined) || !strings.Contains(err.Error(), "into main.main") {
				t.Errorf("main.double: %v; want ErrInlined naming main.main", err)
			}
			err = b.MissingFunc("main.nosuch")
			if !errors.Is(err, ErrNoSymbol) || errors.Is(err, ErrInlined) {
				t.Errorf("main.nosuch: %v; want ErrNoSymbol, not ErrInlined", err)
			}
		})
	}
}
