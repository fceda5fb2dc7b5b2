package uprobe_test

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestForProcessChecksInstructionBoundaries plans the probes of a real Go
// binary (this test's own executable, which links the runtime and package
// context like any target): every planned point passes the check. Then
// each point is moved inside its instruction, one byte at a time, and the
// plan must be refused with an error naming the function and the offset;
// moved to the next instruction, it is accepted again, so the check is
// about boundaries and not about moves.
func TestForProcessChecksInstructionBoundaries(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
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
	if _, points, err := plan.ForProcess(os.Getpid(), 0, bin.FileOffset); err != nil {
		t.Fatalf("ForProcess of the planned points: %v", err)
	} else if len(points) < 2 {
		t.Fatalf("%d points planned, want the spawn probe and context functions", len(points))
	}

	orig := append([]uprobe.Point(nil), plan.Points...)
	refused := 0
	for i, pt := range orig {
		fn, err := bin.Func(pt.Func)
		if err != nil {
			t.Fatal(err)
		}
		code := make([]byte, 32)
		off, err := bin.FileOffset(pt.Address)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readAt(exe, code, off); err != nil {
			t.Fatal(err)
		}
		// The probed instruction and the one after it.
		addr := pt.Address
		for range 2 {
			inst, err := decode(code[addr-pt.Address:])
			if err != nil {
				t.Fatalf("decode %s at %#x: %v", pt.Func, addr, err)
			}
			for d := 1; d < inst.Len; d++ {
				plan.Points[i].Address = addr + uint64(d)
				_, _, err := plan.ForProcess(os.Getpid(), 0, bin.FileOffset)
				if !errors.Is(err, target.ErrNotInstruction) {
					t.Errorf("%s point moved to +%#x, inside %v: ForProcess error %v, want %v",
						pt.Func, addr+uint64(d)-fn.Entry, inst, err, target.ErrNotInstruction)
					continue
				}
				refused++
				if want := pt.Func + "+"; !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name the function and offset (%s...)", err, want)
				}
			}
			addr += uint64(inst.Len)
			plan.Points[i].Address = addr
			if _, _, err := plan.ForProcess(os.Getpid(), 0, bin.FileOffset); err != nil {
				t.Errorf("%s point moved to the next instruction +%#x: %v", pt.Func, addr-fn.Entry, err)
			}
		}
		plan.Points[i] = pt
	}
	if refused == 0 {
		t.Error("no misplaced point was tried")
	}
	// Outside its function.
	fn, _ := bin.Func(orig[0].Func)
	plan.Points[0].Address = fn.End
	if _, _, err := plan.ForProcess(os.Getpid(), 0, bin.FileOffset); !errors.Is(err, target.ErrNotInstruction) {
		t.Errorf("point at the end of %s: ForProcess error %v, want %v", fn.Name, err, target.ErrNotInstruction)
	}
}

// inst is a decoded instruction of this machine's code.
type inst struct {
	Len  int
	text string
}

func (i inst) String() string { return i.text }

// decode decodes the instruction at the start of code: amd64's with
// x86asm, arm64's (4 bytes each) with arm64asm.
func decode(code []byte) (inst, error) {
	if runtime.GOARCH == "arm64" {
		in, err := arm64asm.Decode(code[:4])
		return inst{4, in.String()}, err
	}
	in, err := x86asm.Decode(code, 64)
	return inst{in.Len, in.String()}, err
}

func readAt(path string, b []byte, off uint64) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(b, int64(off))
}
