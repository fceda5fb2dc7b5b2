package uprobe

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/layout"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// TestAssumptionsChecked: the layouts bpf/goabi.h assumes hold in a real
// program with DWARF (examples/semaphore, which links every context type
// checked, built by the local toolchain): each one is found in its DWARF
// (the check for a release the layout table does not know) and compared,
// and a wrong assumption is refused.
func TestAssumptionsChecked(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "semaphore")
	build := exec.Command("go", "build", "-o", exe, "./examples/semaphore")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the target: %v\n%s", err, out)
	}
	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	n, err := checkAgainst(bin.GoVersion, runtimeAssumptions, bin.FieldOffset)
	if err != nil {
		t.Fatalf("%s: %v", bin.GoVersion, err)
	}
	if n != len(runtimeAssumptions) {
		t.Errorf("%d of %d assumptions checked: some type or field was not found under any of its names", n, len(runtimeAssumptions))
	}
	wrong := []assumption{{[]string{"context.valueCtx"}, "val", 24}}
	if _, err := checkAgainst(bin.GoVersion, wrong, bin.FieldOffset); !errors.Is(err, ErrUnsupported) {
		t.Errorf("valueCtx.val assumed at 24: %v, want ErrUnsupported", err)
	}
}

// TestAssumptionsInTable: for every Go release of the layout table, each
// layout bpf/goabi.h assumes is in the table under one of its type's names
// and is what the probes assume; a wrong assumption is refused. What lets
// checkAssumptions skip DWARF for those releases.
func TestAssumptionsInTable(t *testing.T) {
	versions := layout.Versions()
	if len(versions) == 0 {
		t.Fatal("the layout table knows no Go release")
	}
	for _, v := range versions {
		bin := &target.Binary{GoVersion: v + ".0"}
		n, err := checkAssumptions(bin, runtimeAssumptions)
		if err != nil {
			t.Errorf("%s: %v", v, err)
		}
		if n != len(runtimeAssumptions) {
			t.Errorf("%s: %d of %d assumptions in the table: run make layouts", v, n, len(runtimeAssumptions))
		}
		wrong := []assumption{{[]string{"context.valueCtx"}, "val", 24}}
		if _, err := checkAssumptions(bin, wrong); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: valueCtx.val assumed at 24: %v, want ErrUnsupported", v, err)
		}
	}
}
