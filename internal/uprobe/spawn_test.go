package uprobe_test

import (
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
