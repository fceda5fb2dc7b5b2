package target

import (
	"debug/elf"
	"errors"
	"golang.org/x/arch/arm64/arm64asm"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var allModes = []string{modeDefault, modeStripped, modePIE}

func TestOpen(t *testing.T) {
	want := toolchainVersion(t)
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			if b.GoVersion != want {
				t.Errorf("GoVersion = %q, want %q", b.GoVersion, want)
			}
			if b.MainModule != "example.com/probe" {
				t.Errorf("MainModule = %q, want example.com/probe", b.MainModule)
			}
			if len(b.Modules) != 0 {
				t.Errorf("Modules = %v, want none", b.Modules)
			}
			stripped := mode == modeStripped
			if b.Stripped != stripped || b.HasDWARF == stripped {
				t.Errorf("Stripped=%v HasDWARF=%v, want %v %v", b.Stripped, b.HasDWARF, stripped, !stripped)
			}
			if b.PIE != (mode == modePIE) {
				t.Errorf("PIE = %v", b.PIE)
			}
		})
	}
}

func TestFunc(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			text := b.elf.Section(".text")
			for _, name := range []string{"context.WithValue", "runtime.newproc1", "main.work", "main.(*srv).handle"} {
				f, err := b.Func(name)
				if err != nil {
					t.Errorf("Func(%s): %v", name, err)
					continue
				}
				if f.Name != name || f.Entry < text.Addr || f.End > text.Addr+text.Size || f.End <= f.Entry {
					t.Errorf("Func(%s) = %+v, outside .text [%#x,%#x)", name, f, text.Addr, text.Addr+text.Size)
				}
			}
			if _, err := b.Func("main.noSuchFunction"); !errors.Is(err, ErrNoSymbol) {
				t.Errorf("Func(missing) error = %v, want ErrNoSymbol", err)
			}
			fs := b.Funcs()
			if len(fs) < 1000 {
				t.Fatalf("Funcs: only %d functions", len(fs))
			}
			for i := 1; i < len(fs); i++ {
				if fs[i-1].Entry >= fs[i].Entry {
					t.Fatalf("Funcs not sorted at %d: %+v %+v", i, fs[i-1], fs[i])
				}
			}
		})
	}
}

// TestFuncStrippedMatches checks that the pclntab-only lookup of a stripped
// binary agrees with the symbol table of the same program.
func TestFuncStrippedMatches(t *testing.T) {
	full, stripped := openProbe(t, modeDefault), openProbe(t, modeStripped)
	for _, name := range []string{"context.WithValue", "runtime.newproc1", "main.main"} {
		f1, err1 := full.Func(name)
		f2, err2 := stripped.Func(name)
		if err1 != nil || err2 != nil || f1.Entry != f2.Entry || f2.End < f1.End {
			t.Errorf("Func(%s): symtab %+v %v, pclntab %+v %v", name, f1, err1, f2, err2)
		}
	}
}

func TestFileOffset(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			f, err := b.Func("context.WithValue")
			if err != nil {
				t.Fatal(err)
			}
			off, err := b.FileOffset(f.Entry)
			if err != nil {
				t.Fatal(err)
			}
			// Independently: find the executable PT_LOAD by hand.
			var seg *elf.Prog
			for _, p := range b.elf.Progs {
				if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
					seg = p
				}
			}
			if seg == nil {
				t.Fatal("no executable PT_LOAD")
			}
			if want := f.Entry - seg.Vaddr + seg.Off; off != want {
				t.Errorf("FileOffset(%#x) = %#x, want %#x", f.Entry, off, want)
			}
			// The bytes there are the function's bytes in .text.
			text := b.elf.Section(".text")
			want := make([]byte, 16)
			if _, err := text.ReadAt(want, int64(f.Entry-text.Addr)); err != nil {
				t.Fatal(err)
			}
			if got := fileBytes(t, b, off, 16); string(got) != string(want) {
				t.Errorf("bytes at offset %#x = %x, .text has %x", off, got, want)
			}
			if _, err := b.FileOffset(0x10); err == nil {
				t.Error("FileOffset(0x10) succeeded")
			}
			if d := b.elf.Section(".data"); d != nil {
				if _, err := b.FileOffset(d.Addr); err == nil {
					t.Error("FileOffset(.data) succeeded; want only executable segments")
				}
			}
		})
	}
}

func TestProbeAddr(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			// time.readFile has a big frame: its stack check computes
			// SP-frame in R12 first.
			for _, name := range []string{"context.WithValue", "runtime.newproc1", "main.work", "time.readFile"} {
				f, err := b.Func(name)
				if err != nil {
					t.Fatal(err)
				}
				addr, at, err := b.ProbeAddr(f)
				if err != nil || at != AtFramePush {
					t.Fatalf("ProbeAddr(%s) = %#x, %v, %v", name, addr, at, err)
				}
				if addr <= f.Entry || addr >= f.Entry+40 {
					t.Errorf("ProbeAddr(%s) = %#x, not in prologue of %#x", name, addr, f.Entry)
				}
				if c := byteAt(t, b, addr); c != 0x55 {
					t.Errorf("ProbeAddr(%s): byte %#x at %#x, want 0x55 (PUSHQ BP)", name, c, addr)
				}
			}
			// Every function: either at entry, or on a PUSHQ BP.
			var entry, pushed, after int
			for _, f := range b.Funcs() {
				addr, at, err := b.ProbeAddr(f)
				switch {
				case err != nil:
					t.Fatalf("ProbeAddr(%s): %v", f.Name, err)
				case at == AtEntry:
					if addr != f.Entry {
						t.Fatalf("ProbeAddr(%s) at entry but %#x != %#x", f.Name, addr, f.Entry)
					}
					entry++
				case at == AfterStackCheck:
					if addr <= f.Entry || addr >= f.Entry+40 {
						t.Fatalf("ProbeAddr(%s) after the stack check at %#x, not in the prologue of %#x", f.Name, addr, f.Entry)
					}
					after++
				default:
					if c := byteAt(t, b, addr); c != 0x55 {
						t.Fatalf("ProbeAddr(%s): byte %#x at %#x", f.Name, c, addr)
					}
					pushed++
				}
			}
			t.Logf("%d functions probed at PUSHQ BP, %d after the stack check, %d at entry", pushed, after, entry)
		})
	}
}

func TestReturns(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			f, err := b.Func("runtime.newproc1")
			if err != nil {
				t.Fatal(err)
			}
			rets, err := b.Returns(f)
			if err != nil || len(rets) == 0 {
				t.Fatalf("Returns(runtime.newproc1) = %x, %v", rets, err)
			}
			for _, r := range rets {
				if r < f.Entry || r >= f.End {
					t.Errorf("return %#x outside %+v", r, f)
				}
				if c := byteAt(t, b, r); c != 0xC3 {
					t.Errorf("return at %#x holds %#x, want 0xC3", r, c)
				}
			}
		})
	}
}

func TestCallTargets(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			work, err := b.Func("main.work")
			if err != nil {
				t.Fatal(err)
			}
			sprint, err := b.Func("fmt.Sprint")
			if err != nil {
				t.Fatal(err)
			}
			targets, err := b.CallTargets(work)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(targets, sprint.Entry) {
				t.Errorf("CallTargets(main.work) = %x, want fmt.Sprint at %#x", targets, sprint.Entry)
			}
		})
	}
}

// runProbe runs the probe and returns the type words it printed: of an any
// holding the *context.valueCtx and of an any holding main.traceKey{}.
func runProbe(t *testing.T, mode string) (ctxType, keyType uint64) {
	t.Helper()
	out, err := exec.Command(probe(t, mode)).Output()
	if err != nil {
		t.Fatalf("run probe: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	word := func(line string) uint64 {
		fields := strings.Fields(strings.Trim(line, "[]"))
		if len(fields) != 2 {
			t.Fatalf("bad probe output line %q", line)
		}
		v, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil {
			t.Fatalf("bad probe output line %q: %v", line, err)
		}
		return v
	}
	if len(lines) < 2 {
		t.Fatalf("probe output %q", out)
	}
	return word(lines[0]), word(lines[1])
}

func TestTypeAddr(t *testing.T) {
	b := openProbe(t, modeDefault)
	ctxType, keyType := runProbe(t, modeDefault)
	for name, want := range map[string]uint64{"*context.valueCtx": ctxType, "main.traceKey": keyType} {
		got, err := b.TypeAddr(name)
		if err != nil || got != want {
			t.Errorf("TypeAddr(%s) = %#x, %v; the running program says %#x", name, got, err, want)
		}
	}
	for _, name := range []string{"string", "context.valueCtx"} {
		if _, err := b.TypeAddr(name); err != nil {
			t.Errorf("TypeAddr(%s): %v", name, err)
		}
	}
	if _, err := b.TypeAddr("main.noSuchType"); !errors.Is(err, ErrNoSymbol) {
		t.Errorf("TypeAddr(missing) error = %v, want ErrNoSymbol", err)
	}
	// Without the symbol table the section heuristic must find the same base.
	if got, err := b.typesBaseFromSections(); err != nil || got != b.types {
		t.Errorf("types base from sections = %#x, %v; runtime.types = %#x", got, err, b.types)
	}
}

// TestTypeAddrs: the batch answers what TypeAddr answers one name at a
// time, for named and pointer types, the runtime's own, types whose
// package path has slashes, a type the probe's runtime says is there, and
// names no descriptor carries; on a build with DWARF, a stripped one and a
// PIE.
func TestTypeAddrs(t *testing.T) {
	names := []string{"*context.valueCtx", "context.valueCtx", "*context.cancelCtx", "context.backgroundCtx",
		"context.todoCtx", "*context.emptyCtx", "string", "[]uint8", "main.traceKey", "*main.traceKey",
		"*os/signal.signalCtx", "go.opentelemetry.io/otel/trace.nonRecordingSpan", "main.noSuchType", "*main.noSuchType"}
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			addrs, errs := b.TypeAddrs(names)
			found := 0
			for i, n := range names {
				want, wantErr := b.TypeAddr(n)
				if addrs[i] != want || (errs[i] == nil) != (wantErr == nil) {
					t.Errorf("TypeAddrs: %s at %#x (%v); TypeAddr: %#x (%v)", n, addrs[i], errs[i], want, wantErr)
				}
				if errs[i] == nil {
					found++
				}
			}
			if found < 6 {
				t.Errorf("only %d of %d names found: the probe links package context and main.traceKey", found, len(names))
			}
			if _, err := b.TypeAddrs([]string{"main.noSuchType"}); !errors.Is(err[0], ErrNoSymbol) {
				t.Errorf("TypeAddrs(missing) error = %v, want ErrNoSymbol", err[0])
			}
		})
	}
}

// TestTypeAddrPIE checks that a PIE's type words differ from TypeAddr by one
// page-aligned load bias.
func TestTypeAddrPIE(t *testing.T) {
	b := openProbe(t, modePIE)
	ctxType, keyType := runProbe(t, modePIE)
	a1, err1 := b.TypeAddr("*context.valueCtx")
	a2, err2 := b.TypeAddr("main.traceKey")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	bias := ctxType - a1
	if keyType-a2 != bias || bias%4096 != 0 {
		t.Errorf("load bias %#x (ctx) vs %#x (key); want equal and page aligned", bias, keyType-a2)
	}
	if got, err := b.typesBaseFromSections(); err != nil || got != b.types {
		t.Errorf("types base from sections = %#x, %v; runtime.types = %#x", got, err, b.types)
	}
}

func TestFieldOffset(t *testing.T) {
	for _, mode := range []string{modeDefault, modePIE} {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			exact := []struct {
				typ, field string
				want       uint64
			}{
				{"context.valueCtx", "Context", 0},
				{"context.valueCtx", "key", 16},
				{"context.valueCtx", "val", 32},
			}
			for _, c := range exact {
				if got, err := b.FieldOffset(c.typ, c.field); err != nil || got != c.want {
					t.Errorf("FieldOffset(%s, %s) = %d, %v; want %d", c.typ, c.field, got, err, c.want)
				}
			}
			for _, c := range [][2]string{{"runtime.g", "goid"}, {"runtime.g", "sched.bp"}, {"runtime.m", "curg"}, {"context.cancelCtx", "err"}} {
				if got, err := b.FieldOffset(c[0], c[1]); err != nil || got == 0 {
					t.Errorf("FieldOffset(%s, %s) = %d, %v; want > 0", c[0], c[1], got, err)
				}
			}
			sched, _ := b.FieldOffset("runtime.g", "sched")
			bp, _ := b.FieldOffset("runtime.gobuf", "bp")
			if got, _ := b.FieldOffset("runtime.g", "sched.bp"); got != sched+bp {
				t.Errorf("sched.bp = %d, want %d+%d", got, sched, bp)
			}
			for _, c := range [][2]string{{"runtime.g", "noSuchField"}, {"main.noSuchType", "x"}, {"runtime.g", "goid.x"}} {
				if _, err := b.FieldOffset(c[0], c[1]); !errors.Is(err, ErrNoSymbol) {
					t.Errorf("FieldOffset(%s, %s) error = %v, want ErrNoSymbol", c[0], c[1], err)
				}
			}
		})
	}
}

// TestTypeAddrStripped: without DWARF or symbols, type descriptors are
// found by name, at the addresses the running program uses, and where the
// DWARF of the same program (built with it) puts them.
func TestTypeAddrStripped(t *testing.T) {
	b := openProbe(t, modeStripped)
	ctxType, keyType := runProbe(t, modeStripped)
	for name, want := range map[string]uint64{"*context.valueCtx": ctxType, "main.traceKey": keyType} {
		if got, err := b.TypeAddr(name); err != nil || got != want {
			t.Errorf("TypeAddr(%s) = %#x, %v; the running program says %#x", name, got, err, want)
		}
	}
	full := openProbe(t, modeDefault)
	for _, name := range []string{"string", "[]uint8", "context.valueCtx", "*context.cancelCtx", "context.backgroundCtx"} {
		want, err := full.TypeAddr(name)
		if err != nil {
			t.Fatalf("TypeAddr(%s) with DWARF: %v", name, err)
		}
		if got, err := b.TypeAddr(name); err != nil || got != want {
			t.Errorf("stripped TypeAddr(%s) = %#x, %v; with DWARF %#x", name, got, err, want)
		}
	}
	if _, err := b.TypeAddr("main.noSuchType"); !errors.Is(err, ErrNoSymbol) {
		t.Errorf("TypeAddr(missing) error = %v, want ErrNoSymbol", err)
	}
}

func TestNoDWARF(t *testing.T) {
	b := openProbe(t, modeStripped)
	if _, err := b.FieldOffset("runtime.g", "goid"); !errors.Is(err, ErrNoLayout) {
		t.Errorf("FieldOffset error = %v, want ErrNoLayout", err)
	}
	f, _ := b.Func("main.work")
	if _, err := b.ContextArg(f); !errors.Is(err, ErrNoLayout) {
		t.Errorf("ContextArg error = %v, want ErrNoLayout", err)
	}
}

func TestContextArg(t *testing.T) {
	for _, mode := range []string{modeDefault, modePIE} {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			for name, want := range map[string]int{
				"main.work":          0,
				"main.(*srv).handle": 2,
				"main.named":         2,
				"main.batch":         3,
				"context.WithValue":  0,
			} {
				f, err := b.Func(name)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := b.ContextArg(f); err != nil || got != want {
					t.Errorf("ContextArg(%s) = %d, %v; want %d", name, got, err, want)
				}
			}
			f, _ := b.Func("main.scaled")
			if got, err := b.ContextArg(f); err == nil || !strings.Contains(err.Error(), "parameter f (float64)") {
				t.Errorf("ContextArg(main.scaled) = %d, %v; want an error about the float", got, err)
			}
			f, _ = b.Func("runtime.newproc1")
			if _, err := b.ContextArg(f); !errors.Is(err, ErrNoSymbol) {
				t.Errorf("ContextArg(runtime.newproc1) error = %v, want ErrNoSymbol", err)
			}
		})
	}
}

func TestTextRanges(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			user := func(name string) bool { return IsUserFunc(name, b.MainModule, nil) }
			rs := b.TextRanges(user)
			if len(rs) == 0 {
				t.Fatal("no user ranges")
			}
			for i, r := range rs {
				if r.End <= r.Start || i > 0 && r.Start <= rs[i-1].End {
					t.Fatalf("ranges not sorted/merged: %x", rs)
				}
			}
			in := func(addr uint64) bool {
				return slices.ContainsFunc(rs, func(r Range) bool { return addr >= r.Start && addr < r.End })
			}
			work, _ := b.Func("main.work")
			newproc, _ := b.Func("runtime.newproc1")
			if !in(work.Entry) || in(newproc.Entry) {
				t.Errorf("ranges %x: main.work in=%v runtime.newproc1 in=%v", rs, in(work.Entry), in(newproc.Entry))
			}
		})
	}
}

func TestNotGo(t *testing.T) {
	paths := []string{filepath.Join(t.TempDir(), "text")}
	if err := os.WriteFile(paths[0], []byte("#!/bin/sh\ntrue\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := exec.LookPath("true"); err == nil {
		paths = append(paths, p)
	}
	for _, p := range paths {
		b, err := Open(p)
		if !errors.Is(err, ErrNotGo) {
			if b != nil {
				b.Close()
			}
			t.Errorf("Open(%s) error = %v, want ErrNotGo", p, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, p) || !strings.Contains(msg, "Go 1.17+ on amd64") {
			t.Errorf("Open(%s) error %q should name the file and what is supported", p, msg)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil || errors.Is(err, ErrNotGo) {
		t.Errorf("Open(missing) error = %v", err)
	}
}

// TestARM64 inspects a program cross-compiled for arm64 (GOARCH=arm64),
// default and stripped: functions, RET instructions, probe points after the
// stack check, call targets and file offsets, checked against the
// instruction words in the file.
func TestARM64(t *testing.T) {
	for _, mode := range []string{modeARM64, modeARM64Stripped} {
		t.Run(mode, func(t *testing.T) {
			b := openProbe(t, mode)
			if amd := openProbe(t, modeDefault); amd.Arch != "amd64" {
				t.Errorf("amd64 build: Arch %q", amd.Arch)
			}
			if b.Arch != "arm64" || b.GoVersion != toolchainVersion(t) || b.Stripped != (mode == modeARM64Stripped) {
				t.Fatalf("Open: arch %q, Go %q, stripped %v", b.Arch, b.GoVersion, b.Stripped)
			}
			word := func(addr uint64) arm64asm.Inst {
				t.Helper()
				off, err := b.FileOffset(addr)
				if err != nil {
					t.Fatal(err)
				}
				inst, err := arm64asm.Decode(fileBytes(t, b, off, 4))
				if err != nil {
					t.Fatalf("decode at %#x: %v", addr, err)
				}
				return inst
			}
			for _, name := range []string{"context.WithValue", "runtime.newproc1", "main.work"} {
				f, err := b.Func(name)
				if err != nil {
					t.Fatal(err)
				}
				// The first instruction is the stack check's load of
				// g.stackguard0 through R28.
				if in := word(f.Entry); in.Op != arm64asm.LDR || !strings.Contains(in.String(), "X28") {
					t.Errorf("%s starts with %v, want a load through X28 (g)", name, in)
				}
				addr, at, err := b.ProbeAddr(f)
				if err != nil || at != AtFramePush {
					t.Fatalf("ProbeAddr(%s) = %#x, %v, %v", name, addr, at, err)
				}
				// Right after the conditional branch to morestack, on the
				// store of the link register that opens the frame.
				if in := word(addr - 4); in.Op != arm64asm.B {
					t.Errorf("ProbeAddr(%s): before it %v, want B.LS", name, in)
				}
				if in := word(addr); in.Op != arm64asm.STR || in.Args[0] != arm64asm.X30 {
					t.Errorf("ProbeAddr(%s): %v, want the store of X30", name, in)
				}
				rets, err := b.Returns(f)
				if err != nil || len(rets) == 0 {
					t.Fatalf("Returns(%s) = %x, %v", name, rets, err)
				}
				for _, r := range rets {
					if r < f.Entry || r >= f.End || word(r).Op != arm64asm.RET {
						t.Errorf("%s: return at %#x is %v", name, r, word(r))
					}
				}
			}
			m, err := b.Func("main.main")
			if err != nil {
				t.Fatal(err)
			}
			w, err := b.Func("main.work")
			if err != nil {
				t.Fatal(err)
			}
			targets, err := b.CallTargets(m)
			if err != nil || !slices.Contains(targets, w.Entry) {
				t.Errorf("CallTargets(main.main) = %x, %v; want main.work at %#x", targets, err, w.Entry)
			}
			if !b.Stripped {
				if _, err := b.TypeAddr("main.traceKey"); err != nil {
					t.Errorf("TypeAddr(main.traceKey): %v", err)
				}
			}
		})
	}
}
