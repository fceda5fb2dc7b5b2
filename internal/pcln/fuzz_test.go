package pcln

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/testkit/fuzzseed"
)

// seeds are the seed program's builds, shared by the fuzz tests; TestMain
// removes them.
var seeds fuzzseed.Builds

// addCuts adds f's seeds: the pcln tables of the seed program's amd64
// builds (default, PIE, cgo) and arm64 build, cut to a few dozen functions.
func addCuts(f *testing.F, add func(g *fuzzseed.Go)) {
	if fuzzseed.Worker() {
		return
	}
	for _, b := range []struct{ mode, arch string }{{"default", "amd64"}, {"pie", "amd64"}, {"cgo", "amd64"}, {"default", "arm64"}} {
		g, err := seeds.Cut(b.mode, b.arch)
		if err != nil {
			f.Fatal(err)
		}
		add(g)
	}
}

// pclnELF writes the pcln table tab and the go:func.* data gofunc into a
// small ELF file, .gopclntab after .rodata, as the linker lays them out.
func pclnELF(tab, gofunc []byte, text uint64) []byte {
	alloc := elf.SHF_ALLOC
	f := &fuzzseed.File{Type: elf.ET_EXEC, Machine: elf.EM_X86_64, Sections: []fuzzseed.Section{
		{Name: ".text", Type: elf.SHT_NOBITS, Flags: alloc | elf.SHF_EXECINSTR, Addr: text, Size: 1 << 20},
		{Name: ".rodata", Type: elf.SHT_PROGBITS, Flags: alloc, Addr: fuzzRodata, Data: gofunc},
		{Name: ".gopclntab", Type: elf.SHT_PROGBITS, Flags: alloc, Addr: fuzzRodata + 1<<24, Data: tab},
	}}
	return f.ELF()
}

const fuzzRodata = 0x10000000

// FuzzPclntab parses pcln tables (header, function table, _func records,
// pc-value tables, file tables, inline trees) through NewMapped, and
// symbolizes pcs of every function, as ctxwatch does for each stack it
// reports. It checks that nothing panics and that what a parse accepts is
// consistent: functions in address order, each pc's frames the physical
// function last and inlined calls before it.
func FuzzPclntab(f *testing.F) {
	addCuts(f, func(g *fuzzseed.Go) { f.Add(g.Pclntab, g.Gofunc, g.TextAddr) })
	f.Fuzz(func(t *testing.T, tab, gofunc []byte, text uint64) {
		raw := pclnELF(tab, gofunc, text)
		ef, err := elf.NewFile(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("the test's ELF does not parse: %v", err)
		}
		symbol := func(name string) (uint64, bool) {
			switch name {
			case "runtime.text":
				return text, true
			case "go:func.*":
				return fuzzRodata, true
			}
			return 0, false
		}
		tb, err := NewMapped(ef, raw, symbol)
		if err != nil {
			return
		}
		funcs, err := tb.Funcs()
		if err != nil {
			return
		}
		for i, fn := range funcs {
			if fn.End < fn.Entry || i > 0 && fn.Entry < funcs[i-1].Entry {
				t.Fatalf("function %d: [%#x,%#x) after [%#x,%#x)", i, fn.Entry, fn.End, funcs[max(i-1, 0)].Entry, funcs[max(i-1, 0)].End)
			}
			if i >= 32 {
				continue // symbolize a few: the table is what is fuzzed
			}
			name := tb.Name(fn)
			// Name says "?" for a name it cannot read; NameBytes says nil.
			if nb := tb.NameBytes(fn); nb != nil && string(nb) != name {
				t.Fatalf("NameBytes %q, Name %q", nb, name)
			} else if len(nb) > 0 && !tb.NameIs(fn, name) {
				t.Fatalf("NameIs(%q) false for the name NameBytes reads", name)
			}
			for _, pc := range []uint64{fn.Entry, fn.Entry + 1, fn.Entry + (fn.End-fn.Entry)/2, fn.End - 1} {
				frames, err := tb.Frames(pc)
				if err != nil {
					continue
				}
				if len(frames) == 0 || frames[len(frames)-1].Inlined {
					t.Fatalf("Frames(%#x) = %v: want the physical function last", pc, frames)
				}
				for _, fr := range frames[:len(frames)-1] {
					if !fr.Inlined {
						t.Fatalf("Frames(%#x) = %v: an outer frame before the last", pc, frames)
					}
				}
				if _, entry, end, ok := tb.Func(pc); !ok || pc < entry || pc >= end {
					t.Fatalf("Func(%#x) = [%#x,%#x), %v after Frames found it", pc, entry, end, ok)
				}
				tb.FramesForReturn(pc + 1)
			}
		}
	})
}

// FuzzModuledata looks for runtime.firstmoduledata, as in a stripped
// binary, in a data section holding a real moduledata (of the seed
// program's default, stripped, PIE and cgo builds) and checks that what
// it accepts points where it must: text inside .text, go:func.* inside
// a section with data.
func FuzzModuledata(f *testing.F) {
	if !fuzzseed.Worker() {
		for _, mode := range fuzzseed.Modes() {
			p, err := seeds.Path(mode, "amd64")
			if err != nil {
				f.Fatal(err)
			}
			m, err := fuzzseed.ReadModule(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(m.Data, m.Header, m.Addr, m.PclntabAddr, m.TextAddr, m.TextSize, m.GofuncAddr, m.PIE)
		}
	}
	f.Fuzz(func(t *testing.T, data, header []byte, addr, pclnAddr, text, textSize, gofunc uint64, pie bool) {
		m := &fuzzseed.Module{Data: data, Header: header, Addr: addr, PclntabAddr: pclnAddr,
			TextAddr: text, TextSize: textSize, GofuncAddr: gofunc, GofuncData: make([]byte, 64), PIE: pie}
		raw := m.ELF()
		ef, err := elf.NewFile(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("the test's ELF does not parse: %v", err)
		}
		magic := uint32(magic120)
		if len(header) >= 4 {
			magic = binary.LittleEndian.Uint32(header)
		}
		md, err := findModuledata(image{f: ef, file: raw}, pclnAddr, &Table{magic: magic})
		if err != nil {
			return
		}
		if ts := ef.Section(".text"); md.text < ts.Addr || md.text-ts.Addr > ts.Size+4096 {
			t.Fatalf("moduledata at %#x: text %#x outside .text [%#x,+%#x)", md.addr, md.text, ts.Addr, ts.Size)
		}
		if _, err := (image{f: ef, file: raw}).dataAt(md.gofunc); err != nil {
			t.Fatalf("moduledata at %#x: gofunc %#x: %v", md.addr, md.gofunc, err)
		}
	})
}

// TestHugeCountDoesNotAllocate gives parseHeader and Funcs tables whose
// header claims more functions than there are or than any binary has: they
// must fail with an error saying so, without allocating for the claim.
func TestHugeCountDoesNotAllocate(t *testing.T) {
	header := func(nfunc uint64, size int) []byte {
		tab := make([]byte, size)
		le := binary.LittleEndian
		le.PutUint32(tab, magic120)
		tab[6], tab[7] = 1, 8
		le.PutUint64(tab[8:], nfunc)
		for i := 3; i <= 7; i++ {
			le.PutUint64(tab[8+8*i:], 72) // every table at the end of the header
		}
		return tab
	}
	for _, c := range []struct {
		name  string
		nfunc uint64
		size  int
		want  string
	}{
		// A header of 72 bytes claiming 2^40 functions.
		{"nfunc beyond the table", 1 << 40, 72 + 64, "does not fit"},
		// 80 MB of ftab, zeros: room for 10M entries, more than the
		// limit; without it Funcs would allocate 240 MB.
		{"nfunc over the limit", 10 << 20, 72 + 80<<20 + 16, "over the limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := header(c.nfunc, c.size)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			tb, err := parseHeader(tab)
			if err == nil {
				_, err = tb.Funcs()
			}
			runtime.ReadMemStats(&after)
			if err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parse of a table claiming %d functions: error %v, want ErrCorrupt %q", c.nfunc, err, c.want)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Errorf("parse of a table claiming %d functions allocated %d bytes, want under 1 MiB", c.nfunc, got)
			}
		})
	}
}

// TestFuzzSeeds checks that the fuzz tests' seeds are what they stand for:
// each cut table parses and symbolizes with inline trees, and each
// moduledata is found where the binary has it. A seed that failed to parse
// would leave the fuzzer to start from the first error path.
func TestFuzzSeeds(t *testing.T) {
	for _, b := range []struct{ mode, arch string }{{"default", "amd64"}, {"pie", "amd64"}, {"cgo", "amd64"}, {"default", "arm64"}} {
		g, err := seeds.Cut(b.mode, b.arch)
		if err != nil {
			t.Fatal(err)
		}
		raw := pclnELF(g.Pclntab, g.Gofunc, g.TextAddr)
		ef, err := elf.NewFile(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		symbol := func(name string) (uint64, bool) {
			v := map[string]uint64{"runtime.text": g.TextAddr, "go:func.*": fuzzRodata}[name]
			return v, v != 0
		}
		tb, err := NewMapped(ef, raw, symbol)
		if err != nil {
			t.Fatalf("%s/%s: cut table: %v", b.arch, b.mode, err)
		}
		funcs, err := tb.Funcs()
		if err != nil || len(funcs) != len(g.Funcs) {
			t.Fatalf("%s/%s: %d functions, %v; want %d", b.arch, b.mode, len(funcs), err, len(g.Funcs))
		}
		inlined := 0
		for _, fn := range funcs {
			for pc := fn.Entry; pc < fn.End; pc++ {
				if fr, err := tb.Frames(pc); err == nil && len(fr) > 1 {
					inlined++
				}
			}
		}
		if inlined == 0 {
			t.Errorf("%s/%s: no pc symbolizes to inlined frames", b.arch, b.mode)
		}
	}
	for _, mode := range fuzzseed.Modes() {
		p, err := seeds.Path(mode, "amd64")
		if err != nil {
			t.Fatal(err)
		}
		m, err := fuzzseed.ReadModule(p)
		if err != nil {
			t.Fatal(err)
		}
		raw := m.ELF()
		ef, err := elf.NewFile(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		md, err := findModuledata(image{f: ef, file: raw}, m.PclntabAddr, &Table{magic: magic120})
		if err != nil || md.addr != m.Addr || md.gofunc != m.GofuncAddr {
			t.Errorf("%s: moduledata %+v, %v; want at %#x, gofunc %#x", mode, md, err, m.Addr, m.GofuncAddr)
		}
	}
}
