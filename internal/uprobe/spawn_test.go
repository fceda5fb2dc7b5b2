package uprobe_test

import (
	"debug/dwarf"
	"debug/elf"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestSpawnProbeOnRunqputCall: in a Go binary (an example), the spawn
// probe sits on CALL instructions of runtime.newproc.func1 whose target is
// runtime.runqput, with the new g in the second argument register. The
// instructions are decoded here from the ELF file and its symbol table, not
// through the package that chose them.
func TestSpawnProbeOnRunqputCall(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("decodes amd64 code; this host is " + runtime.GOARCH)
	}
	exe := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", exe, "./examples/worker")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the target: %v\n%s", err, out)
	}
	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Layout.SpawnGArg != 1 {
		t.Errorf("SpawnGArg = %d, want 1 (runqput's gp)", plan.Layout.SpawnGArg)
	}
	// The spawner's goid, from the new g (Go 1.21 and later): read with
	// the goid by one read of 160 bytes (bpf/ctxwatch.c, IDS_WORDS).
	goid, parent := dwarfOffset(t, exe, "runtime.g", "goid"), dwarfOffset(t, exe, "runtime.g", "parentGoid")
	if l := plan.Layout; l.GGoid != goid || l.GParentGoid != parent || parent <= goid || parent-goid >= 160 {
		t.Errorf("g.goid at %d, g.parentGoid at %d; DWARF says %d and %d: want them known, 8 to 152 bytes apart", l.GGoid, l.GParentGoid, goid, parent)
	}

	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var closure, runqput elf.Symbol
	for _, s := range syms {
		switch s.Name {
		case "runtime.newproc.func1":
			closure = s
		case "runtime.runqput":
			runqput = s
		}
	}
	if closure.Value == 0 || runqput.Value == 0 {
		t.Fatalf("symbols runtime.newproc.func1 (%#x), runtime.runqput (%#x) not both found", closure.Value, runqput.Value)
	}
	text := f.Section(".text")
	n := 0
	for _, pt := range plan.Points {
		if pt.Program != uprobe.Spawn {
			continue
		}
		n++
		if pt.Address < closure.Value || pt.Address >= closure.Value+closure.Size {
			t.Errorf("spawn probe at %#x, outside runtime.newproc.func1 [%#x,%#x)", pt.Address, closure.Value, closure.Value+closure.Size)
			continue
		}
		code := make([]byte, 16)
		if _, err := text.ReadAt(code, int64(pt.Address-text.Addr)); err != nil {
			t.Fatal(err)
		}
		inst, err := x86asm.Decode(code, 64)
		if err != nil {
			t.Fatalf("decode at %#x: %v", pt.Address, err)
		}
		rel, ok := inst.Args[0].(x86asm.Rel)
		if inst.Op != x86asm.CALL || !ok || pt.Address+uint64(inst.Len)+uint64(int64(rel)) != runqput.Value {
			t.Errorf("spawn probe at %#x is %v, want CALL runtime.runqput (%#x)", pt.Address, inst, runqput.Value)
		}
	}
	if n == 0 {
		t.Error("no spawn probe planned")
	}
	for _, pt := range plan.Points {
		if pt.Stepped {
			t.Errorf("%s probe at %#x is single-stepped; every probe of this binary should be emulated", pt.Func, pt.Address)
		}
	}
}

// dwarfOffset reads the offset of field of struct typ from exe's DWARF.
func dwarfOffset(t *testing.T, exe, typ, field string) uint64 {
	t.Helper()
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		t.Fatalf("DWARF of %s: %v", exe, err)
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			t.Fatalf("struct %s not in the DWARF of %s (%v)", typ, exe, err)
		}
		if e.Tag != dwarf.TagStructType || e.Val(dwarf.AttrName) != typ {
			continue
		}
		ty, err := d.Type(e.Offset)
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range ty.(*dwarf.StructType).Field {
			if fl.Name == field {
				return uint64(fl.ByteOffset)
			}
		}
		t.Fatalf("%s has no field %s", typ, field)
	}
}
