package target

import (
	"bytes"
	"debug/elf"
	"errors"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/testkit/fuzzseed"
)

// seeds are the fuzz seeds' builds of the seed program; TestMain removes
// them.
var seeds fuzzseed.Builds

// seedBuilds are the builds whose cut the fuzz tests start from.
var seedBuilds = []struct{ mode, arch string }{{"default", "amd64"}, {"pie", "amd64"}, {"cgo", "amd64"}, {"default", "arm64"}}

// cuts returns the cut seed programs, or nil in a fuzz worker, which does
// not use seeds.
func cuts(tb testing.TB) []*fuzzseed.Go {
	if fuzzseed.Worker() {
		return nil
	}
	var out []*fuzzseed.Go
	for _, b := range seedBuilds {
		g, err := seeds.Cut(b.mode, b.arch)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

// tinyELF is an ELF file of a few hundred bytes with no Go in it: a
// header, an executable segment and a few sections.
func tinyELF() []byte {
	f := &fuzzseed.File{Type: elf.ET_EXEC, Machine: elf.EM_X86_64, Sections: []fuzzseed.Section{
		{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: 0x401000, Data: []byte{0x55, 0x48, 0x89, 0xe5, 0xc3}},
		{Name: ".go.buildinfo", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE, Addr: 0x402000, Data: []byte("\xff Go buildinf:\x08\x02")},
		{Name: ".gopclntab", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Addr: 0x403000, Data: []byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}},
	}, Progs: []fuzzseed.Prog{{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Section: ".text"}}}
	return f.ELF()
}

// inspectBytes inspects an executable held in memory, as Open does a
// mapped file. The Binary must not be closed.
func inspectBytes(image []byte) (*Binary, error) {
	return inspect("fuzz", nil, image)
}

// exercise calls what ctxwatch calls on an inspected binary, for the
// first functions, and checks that the answers lie where they must.
func exercise(t *testing.T, b *Binary) {
	funcs := b.Funcs()
	for i, fn := range funcs {
		if fn.End < fn.Entry || i > 0 && fn.Entry < funcs[i-1].Entry {
			t.Fatalf("function %d %s: [%#x,%#x) out of order", i, fn.Name, fn.Entry, fn.End)
		}
		if i >= 16 {
			continue
		}
		// "?" is how a name that cannot be read is shown (as the Go
		// runtime shows it), not a name to look a function up by.
		if fn.Name == "?" {
			continue
		}
		if got, err := b.Func(fn.Name); err != nil || got.Entry > fn.Entry {
			t.Fatalf("Func(%q) = %+v, %v; Funcs lists it at %#x", fn.Name, got, err, fn.Entry)
		}
		if addr, _, err := b.ProbeAddr(fn); err == nil && (addr < fn.Entry || addr >= fn.End) {
			t.Fatalf("ProbeAddr(%s) = %#x outside [%#x,%#x)", fn.Name, addr, fn.Entry, fn.End)
		}
		rets, _ := b.Returns(fn)
		for _, r := range rets {
			if r < fn.Entry || r >= fn.End {
				t.Fatalf("Returns(%s): %#x outside [%#x,%#x)", fn.Name, r, fn.Entry, fn.End)
			}
		}
		b.CallTargets(fn)
		b.ContextArg(fn)
	}
	b.TextRanges(func(name string) bool { return IsUserFunc(name, b.MainModule, nil) })
	for _, name := range []string{"main.traceKey", "*main.span", "context.valueCtx"} {
		b.TypeAddr(name)
	}
	b.FieldOffset("runtime.g", "goid")
	if tab := b.LineTable(); tab != nil {
		for _, fn := range funcs[:min(len(funcs), 16)] {
			tab.Frames(fn.Entry)
		}
	}
}

// FuzzInspect inspects whole ELF files: the ELF header, section and
// program tables, build info, symbol table and pcln table together, then
// what ctxwatch asks of a binary (functions, probe points, RETs, calls,
// types). Seeds: the seed program's builds cut to a few dozen functions
// (about 20 KB each), with and without symbol table, and a tiny ELF.
func FuzzInspect(f *testing.F) {
	f.Add(tinyELF())
	for _, g := range cuts(f) {
		f.Add(g.ELF(false))
		f.Add(g.ELF(true))
	}
	f.Fuzz(func(t *testing.T, image []byte) {
		b, err := inspectBytes(image)
		if err != nil {
			return
		}
		exercise(t, b)
	})
}

// buildInfoELF is tinyELF with info as its .go.buildinfo section.
func buildInfoELF(info []byte) []byte {
	f := &fuzzseed.File{Type: elf.ET_EXEC, Machine: elf.EM_X86_64, Sections: []fuzzseed.Section{
		{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: 0x401000, Data: []byte{0xc3}},
		{Name: ".go.buildinfo", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE, Addr: 0x402000, Data: info},
	}, Progs: []fuzzseed.Prog{
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Section: ".text"},
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_W, Section: ".go.buildinfo"},
	}}
	return f.ELF()
}

// FuzzBuildInfo inspects an ELF file whose .go.buildinfo section is the
// input: the build information's header, Go version and module list, as
// debug/buildinfo reads them and Open interprets them. The file has no
// pcln table, so no input is accepted; every rejection must say which of
// not Go, wrong architecture or too old a Go it is. Seeds: the sections
// of the seed program's builds.
func FuzzBuildInfo(f *testing.F) {
	for _, g := range cuts(f) {
		f.Add(g.BuildInfo)
	}
	f.Fuzz(func(t *testing.T, info []byte) {
		_, err := inspectBytes(buildInfoELF(info))
		if err == nil {
			t.Fatal("a file without pcln table inspected without error")
		}
		if !errors.Is(err, ErrNotGo) && !errors.Is(err, ErrArch) && !errors.Is(err, ErrGoTooOld) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %q is none of ErrNotGo, ErrArch, ErrGoTooOld, ErrCorrupt", err)
		}
	})
}

// codeELF writes code at addr into an executable segment of a small ELF
// for the given machine and returns it inspected far enough to decode.
func codeBinary(t *testing.T, machine elf.Machine, addr uint64, code []byte) *Binary {
	f := &fuzzseed.File{Type: elf.ET_EXEC, Machine: machine, Sections: []fuzzseed.Section{
		{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: addr, Data: code},
	}, Progs: []fuzzseed.Prog{{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Section: ".text"}}}
	image := f.ELF()
	ef, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		t.Fatalf("the test's ELF does not parse: %v", err)
	}
	return &Binary{Path: "fuzz", Arch: machineName(machine), elf: ef, image: image}
}

// FuzzCode decodes machine code as ProbeAddr, Returns and Calls do, for
// amd64 and arm64. Seeds: the code of each function of the cut seed
// programs.
func FuzzCode(f *testing.F) {
	for _, g := range cuts(f) {
		for _, code := range g.Code {
			f.Add(code, g.Machine == elf.EM_AARCH64)
		}
	}
	f.Fuzz(func(t *testing.T, code []byte, arm64 bool) {
		if len(code) == 0 {
			return
		}
		machine := elf.EM_X86_64
		if arm64 {
			machine = elf.EM_AARCH64
		}
		const addr = 0x401000
		b := codeBinary(t, machine, addr, code)
		fn := Func{Name: "fuzz", Entry: addr, End: addr + uint64(len(code))}
		if p, _, err := b.ProbeAddr(fn); err == nil && (p < fn.Entry || p >= fn.End) {
			t.Fatalf("ProbeAddr = %#x outside [%#x,%#x)", p, fn.Entry, fn.End)
		}
		rets, _ := b.Returns(fn)
		for _, r := range rets {
			if r < fn.Entry || r >= fn.End {
				t.Fatalf("Returns: %#x outside [%#x,%#x)", r, fn.Entry, fn.End)
			}
		}
		calls, _ := b.Calls(fn)
		for _, c := range calls {
			if c.Addr < fn.Entry || c.Addr >= fn.End {
				t.Fatalf("Calls: call at %#x outside [%#x,%#x)", c.Addr, fn.Entry, fn.End)
			}
		}
	})
}

// TestFuzzSeeds checks that the fuzz seeds are what they stand for: every
// cut seed program, with and without its symbol table, is a Go binary that
// Open's inspection accepts, with main.work and its context argument's
// code, RETs and probe point; the tiny ELF is rejected as not Go.
func TestFuzzSeeds(t *testing.T) {
	if _, err := inspectBytes(tinyELF()); err == nil {
		t.Errorf("tiny ELF with no Go in it inspected without error")
	}
	for i, g := range cuts(t) {
		for _, stripped := range []bool{false, true} {
			b, err := inspectBytes(g.ELF(stripped))
			if err != nil {
				t.Fatalf("%s stripped=%v: %v", seedBuilds[i].mode, stripped, err)
			}
			if b.Stripped != stripped || b.MainModule != "example.com/seed" || b.Arch != seedBuilds[i].arch {
				t.Errorf("%s: stripped %v, main module %q, arch %s", seedBuilds[i].mode, b.Stripped, b.MainModule, b.Arch)
			}
			fn, err := b.Func("main.work")
			if err != nil {
				t.Fatalf("%s: %v", seedBuilds[i].mode, err)
			}
			if rets, err := b.Returns(fn); err != nil || len(rets) == 0 {
				t.Errorf("%s: Returns(main.work) = %v, %v; want RETs", seedBuilds[i].mode, rets, err)
			}
			if _, at, err := b.ProbeAddr(fn); err != nil || at == AtEntry {
				t.Errorf("%s: ProbeAddr(main.work): %v, %v; want after the stack check", seedBuilds[i].mode, at, err)
			}
			if frames, err := b.LineTable().Frames(fn.Entry); err != nil || frames[0].Function != "main.work" {
				t.Errorf("%s: Frames(main.work entry) = %v, %v", seedBuilds[i].mode, frames, err)
			}
		}
	}
}
