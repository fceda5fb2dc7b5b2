package target

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// wrappersSource prints the dynamic type word of each context it makes:
// the truth ContextWrappers is checked against, from the running program.
const wrappersSource = `package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"unsafe"
)

type key struct{}

type ptrWrap struct {
	context.Context
	n int
}

type valWrap struct{ context.Context }

type notFirst struct {
	n int
	context.Context
}

type firstOther struct {
	error
	context.Context
}

func typeWord(v interface{}) uintptr { return (*[2]uintptr)(unsafe.Pointer(&v))[0] }

func itabWord(c context.Context) uintptr { return (*[2]uintptr)(unsafe.Pointer(&c))[0] }

var sink []context.Context

func main() {
	base := context.WithValue(context.Background(), key{}, 1)
	sig, stop := signal.NotifyContext(base, os.Interrupt)
	defer stop()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{
		{"wrapper *main.ptrWrap", &ptrWrap{base, 1}},
		{"wrapper main.valWrap", valWrap{base}},
		{"wrapper signal.NotifyContext", sig},
		{"other *main.notFirst", &notFirst{1, base}},
		{"other *main.firstOther", &firstOther{nil, base}},
		{"other *context.valueCtx", base},
	} {
		sink = append(sink, c.ctx)
		fmt.Printf("%s %x\n", c.name, typeWord(c.ctx))
	}
	cancelable, cancel := context.WithCancel(base)
	defer cancel()
	fmt.Printf("itab *context.valueCtx %x\n", itabWord(base))
	fmt.Printf("itab *context.cancelCtx %x\n", itabWord(cancelable))
}
`

// TestContextWrappers: the wrappers read from the itabs are exactly the
// types the running program's wrapper contexts have (a pointer to a struct
// embedding context.Context first, such a struct by value, os/signal's
// signalCtx), none of the others (context.Context embedded second, another
// interface embedded first, package context's own); for Go 1.17 (the embedded bit in the field's offset) and the toolchain
// of this module (in the field's name, from Go 1.19), PIE and not, and
// stripped (no DWARF, no symbols: the itabs still answer). DWARF, which
// ctxwatch read for this before, found none of them. And ContextItabs
// gives the itab words that the program's *valueCtx and *cancelCtx
// contexts carry, by which the context walk knows them without a read.
func TestContextWrappers(t *testing.T) {
	for _, tc := range []string{"go1.17.13", "local"} {
		for _, mode := range []string{modeDefault, modePIE, modeStripped} {
			t.Run(tc+"/"+mode, func(t *testing.T) {
				exe := buildWrappers(t, tc, mode)
				out, err := exec.Command(exe).Output()
				if err != nil {
					t.Fatalf("run %s: %v", exe, err)
				}
				b, err := Open(exe)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				valueCtx, err := b.TypeAddr("*context.valueCtx")
				if err != nil {
					t.Fatal(err)
				}
				var bias uint64
				var want, others []uint64
				itabs := map[string]uint64{} // the program's itab words, by type
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					f := strings.Fields(line)
					if len(f) != 3 {
						t.Fatalf("bad line %q", line)
					}
					w, err := strconv.ParseUint(f[2], 16, 64)
					if err != nil {
						t.Fatalf("bad line %q", line)
					}
					if f[0] == "itab" {
						itabs[f[1]] = w
						continue
					}
					if f[0] == "wrapper" {
						want = append(want, w)
					} else {
						others = append(others, w)
					}
					if f[1] == "*context.valueCtx" {
						bias = w - valueCtx
					}
				}
				if bias != 0 && !b.PIE {
					t.Fatalf("*context.valueCtx at %#x in the file, %#x in the process: not PIE, no bias expected", valueCtx, valueCtx+bias)
				}
				got, err := b.ContextWrappers()
				if err != nil {
					t.Fatal(err)
				}
				for i := range got {
					got[i] += bias
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("ContextWrappers (+ load bias %#x) = %#x; the program's wrapper contexts have types %#x (others %#x)", bias, got, want, others)
				}
				byType, err := b.ContextItabs()
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range []string{"*context.valueCtx", "*context.cancelCtx"} {
					typ, err := b.TypeAddr(name)
					if err != nil {
						t.Fatal(err)
					}
					if got := byType[typ] + bias; byType[typ] == 0 || got != itabs[name] {
						t.Errorf("ContextItabs()[%s] (+ load bias %#x) = %#x; the program's %s context has itab %#x", name, bias, got, name, itabs[name])
					}
				}
			})
		}
	}
}

// buildWrappers builds wrappersSource with toolchain tc ("local": the go
// command's own) in mode.
func buildWrappers(t *testing.T, tc, mode string) string {
	t.Helper()
	g := goTool(t)
	dir := t.TempDir()
	for name, text := range map[string]string{"go.mod": "module example.com/wrappers\n\ngo 1.17\n", "main.go": wrappersSource} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "wrappers")
	args := append([]string{"build", "-o", exe}, modeFlags[mode]...)
	cmd := exec.Command(g, append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = goEnv(t, "GOOS=linux", "GOARCH=amd64")
	if tc != "local" {
		// Go 1.17 rejects the -buildvcs a go env file may set: no env file.
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+tc, "GOENV=off")
		for _, k := range []string{"GOMODCACHE", "GOCACHE", "GOPROXY", "GOSUMDB"} {
			if os.Getenv(k) == "" {
				if v, err := exec.Command(g, "env", k).Output(); err == nil {
					cmd.Env = append(cmd.Env, k+"="+strings.TrimSpace(string(v)))
				}
			}
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (%s): %v\n%s", strings.Join(args, " "), tc, err, out)
	}
	return exe
}

// TestProbeAddrBeforePushBP: Go 1.17 to 1.20 open a frame with SUBQ, not
// PUSHQ BP: an entry probe goes on the first instruction after the stack
// check (single-stepped, but once per call: on the first instruction
// morestack's re-entry fired it twice, and a channel send was handed
// twice), never after a branch of the function's own.
func TestProbeAddrBeforePushBP(t *testing.T) {
	b, err := Open(buildWrappers(t, "go1.17.13", modeDefault))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, name := range []string{"runtime.chansend", "runtime.chanrecv", "context.WithValue", "context.WithCancel"} {
		fn, err := b.Func(name)
		if err != nil {
			t.Fatal(err)
		}
		addr, at, err := b.ProbeAddr(fn)
		if err != nil || at != AfterStackCheck {
			t.Errorf("ProbeAddr(%s) = %#x, %v, %v; want after the stack check", name, addr, at, err)
			continue
		}
		// What precedes: CMPQ ..., 16(R14) then a conditional jump.
		code, err := b.funcCode(fn)
		if err != nil {
			t.Fatal(err)
		}
		var insts []x86asm.Inst
		for pc := 0; uint64(pc) < addr-fn.Entry; {
			inst, err := x86asm.Decode(code[pc:], 64)
			if err != nil {
				t.Fatalf("%s: decode at %d: %v", name, pc, err)
			}
			insts = append(insts, inst)
			pc += inst.Len
		}
		if n := len(insts); n < 2 || !isStackCheck(insts[n-2]) || !isCondJump(insts[n-1]) {
			t.Errorf("%s: the probe at %#x does not follow a stack check: %v", name, addr, insts)
		}
	}
}
