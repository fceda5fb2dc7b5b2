package target

import (
	"debug/dwarf"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/testkit/fuzzseed"
)

// dwarfSeedSource declares struct types shaped like those whose offsets
// ctxwatch reads (runtime.g's goid and sched.bp, a context's parent), with
// a typedef, nesting, an array and a function, so that its DWARF has each
// kind of entry indexDWARF and fieldOffset walk.
const dwarfSeedSource = `
typedef unsigned long uintptr;
struct gobuf { uintptr sp, pc, g, ctxt, ret, lr, bp; };
struct m;
struct g {
	struct { uintptr lo, hi; } stack;
	uintptr stackguard0;
	struct gobuf sched;
	struct m *m;
	unsigned long long goid;
};
struct m { struct g *g0, *curg; int id; };
typedef struct g g_t;
struct iface { void *tab, *data; };
struct valueCtx { struct iface Context; struct iface key, val; char pad[3]; };
int work(struct g *gp, struct valueCtx *c, g_t copy) { return (int)(gp->goid + c->pad[0] + copy.goid); }
`

// dwarfSections are the sections a seed gives: .debug_abbrev, .debug_info,
// .debug_str and (DWARF 5) .debug_line_str.
var dwarfSections = []string{".debug_abbrev", ".debug_info", ".debug_str", ".debug_line_str"}

// dwarfSeeds compiles dwarfSeedSource with gcc (DWARF 4 and 5, linked, so
// that the sections hold no relocations left to apply) and returns the
// dwarfSections of each: a few kilobytes, where a Go binary's DWARF is a
// megabyte.
func dwarfSeeds(tb testing.TB) [][4][]byte {
	if fuzzseed.Worker() {
		return nil
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		tb.Fatal("the DWARF fuzz seeds are compiled with gcc (apt-get install gcc)")
	}
	dir := tb.TempDir()
	src := filepath.Join(dir, "seed.c")
	if err := os.WriteFile(src, []byte(dwarfSeedSource), 0o644); err != nil {
		tb.Fatal(err)
	}
	var seeds [][4][]byte
	for _, v := range []string{"-gdwarf-4", "-gdwarf-5"} {
		obj := filepath.Join(dir, "seed"+v+".so")
		if out, err := exec.Command(gcc, "-shared", "-nostdlib", "-fPIC", "-O0", v, "-o", obj, src).CombinedOutput(); err != nil {
			tb.Fatalf("gcc %s: %v\n%s", v, err, out)
		}
		f, err := elf.Open(obj)
		if err != nil {
			tb.Fatal(err)
		}
		var secs [4][]byte
		for i, name := range dwarfSections {
			if s := f.Section(name); s != nil {
				if secs[i], err = s.Data(); err != nil {
					tb.Fatal(err)
				}
			}
		}
		f.Close()
		seeds = append(seeds, secs)
	}
	return seeds
}

// FuzzDWARF feeds DWARF sections to the index ctxwatch builds and to the
// field offset lookups it makes (runtime.g's goid, sched.bp): an error,
// or offsets that lie inside their struct, never a panic.
func FuzzDWARF(f *testing.F) {
	for _, s := range dwarfSeeds(f) {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, abbrev, info, str, lineStr []byte) {
		d, err := newDWARF(abbrev, info, str, lineStr)
		if err != nil {
			return
		}
		ix, err := indexDWARF(d)
		if err != nil {
			return
		}
		n := 0
		for name := range ix.types {
			if n++; n > 64 {
				break
			}
			for _, path := range []string{"goid", "sched.bp", "Context", "g0"} {
				off, err := ix.fieldOffset(name, path)
				if err != nil {
					continue
				}
				if size := typeSize(ix, name); size >= 0 && int64(off) > size {
					// debug/dwarf does not check member offsets against
					// the struct's size: neither may the caller trust them.
					t.Logf("%s.%s at %d, past the struct's %d bytes", name, path, off, size)
				}
			}
		}
	})
}

// newDWARF reads DWARF from its sections, as debug/elf does from a file.
func newDWARF(abbrev, info, str, lineStr []byte) (*dwarf.Data, error) {
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
	if err != nil {
		return nil, err
	}
	if len(lineStr) > 0 {
		if err := d.AddSection(".debug_line_str", lineStr); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// typeSize is the byte size DWARF gives the named type, or -1.
func typeSize(ix *dwarfIndex, name string) (size int64) {
	defer func() {
		if recover() != nil {
			size = -1
		}
	}()
	t, err := ix.d.Type(ix.types[name].off)
	if err != nil {
		return -1
	}
	return t.Size()
}

// TestDWARFSeeds: the seeds parse, and the offsets read from them are those
// the C compiler laid out (on amd64: goid after the stack bounds, the
// guard, the 7-word gobuf and the m pointer).
func TestDWARFSeeds(t *testing.T) {
	for _, s := range dwarfSeeds(t) {
		d, err := newDWARF(s[0], s[1], s[2], s[3])
		if err != nil {
			t.Fatal(err)
		}
		ix, err := indexDWARF(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			typ, path string
			want      uint64
		}{{"g", "goid", 2*8 + 8 + 7*8 + 8}, {"g", "sched.bp", 3*8 + 6*8}, {"g_t", "sched.pc", 3*8 + 8}, {"valueCtx", "val", 32}} {
			if got, err := ix.fieldOffset(c.typ, c.path); err != nil || got != c.want {
				t.Errorf("fieldOffset(%s, %s) = %d, %v; want %d", c.typ, c.path, got, err, c.want)
			}
		}
	}
}
