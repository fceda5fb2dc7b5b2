package uprobe_test

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestSlogProbeOnHandleCall: in a binary that logs with log/slog, a
// log record probe sits in each of (*Logger).log and logAttrs, on a CALL
// through a register (the handler's Handle), decoded here from the ELF file
// and its symbol table; a --log-func helper is probed at its entry. A
// binary without log/slog gets no such probe, and a note says so.
func TestSlogProbeOnHandleCall(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("decodes amd64 code; this host is " + runtime.GOARCH)
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "./integration/testdata/slogsite", "./examples/worker")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the targets: %v\n%s", err, out)
	}
	exe := filepath.Join(dir, "slogsite")
	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{LogFuncs: []string{"main.logf"}})
	if err != nil {
		t.Fatal(err)
	}

	checkLogProbes(t, exe, plan, func(pt uprobe.Point, code []byte) string {
		inst, err := x86asm.Decode(code, 64)
		if err != nil {
			return err.Error()
		}
		if pt.Program == uprobe.LogFunc {
			if inst.Op != x86asm.PUSH || pt.ContextArg != 0 {
				return fmt.Sprintf("%v, context in register %d; want PUSHQ BP, the context first (RAX/RBX)", inst, pt.ContextArg)
			}
			return ""
		}
		if _, reg := inst.Args[0].(x86asm.Reg); inst.Op != x86asm.CALL || !reg || !pt.Stepped {
			return fmt.Sprintf("%v (stepped %v), want a CALL through a register, single-stepped", inst, pt.Stepped)
		}
		return ""
	})

	// Without log/slog: watched, and said.
	other, err := target.Open(filepath.Join(dir, "worker"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	plan, err = uprobe.NewPlan(other, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range plan.Points {
		if pt.Program == uprobe.SlogHandle {
			t.Errorf("a binary without log/slog has a log record probe: %+v", pt)
		}
	}
	if !strings.Contains(strings.Join(plan.Notes, "\n"), "log records through log/slog.(*Logger).log not watched") {
		t.Errorf("notes do not say records are not watched: %q", plan.Notes)
	}
}

// TestSlogProbeOnHandleCallARM64: in an arm64 binary the log record probe
// of (*Logger).log and logAttrs sits on their one BLR (the handler's
// Handle), decoded here by the arm64 disassembler from the ELF file; the
// --log-func helper is probed inside its symbol.
func TestSlogProbeOnHandleCallARM64(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "slogsite")
	build := exec.Command("go", "build", "-o", exe, "./integration/testdata/slogsite")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "GOARCH=arm64", "GOOS=linux", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the target: %v\n%s", err, out)
	}
	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{LogFuncs: []string{"main.logf"}})
	if err != nil {
		t.Fatal(err)
	}
	checkLogProbes(t, exe, plan, func(pt uprobe.Point, code []byte) string {
		if pt.Program == uprobe.LogFunc {
			return "" // placed as every entry probe (target.ProbeAddr)
		}
		if inst, err := arm64asm.Decode(code[:4]); err != nil || inst.Op != arm64asm.BLR {
			return fmt.Sprintf("%v (%v), want a BLR", inst, err)
		}
		return ""
	})
}

// checkLogProbes checks plan's log probes in exe against its ELF symbol
// table: one in each of log/slog's (*Logger).log and logAttrs and in the
// --log-func main.logf, inside its symbol, and check, given the probe and
// the code at its address, says what is wrong with the instruction there.
func checkLogProbes(t *testing.T, exe string, plan *uprobe.Plan, check func(pt uprobe.Point, code []byte) string) {
	t.Helper()
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]elf.Symbol{}
	for _, s := range syms {
		switch s.Name {
		case "log/slog.(*Logger).log", "log/slog.(*Logger).logAttrs", "main.logf":
			funcs[s.Name] = s
		}
	}
	if len(funcs) != 3 {
		t.Fatalf("symbols found: %d of 3", len(funcs))
	}
	text := f.Section(".text")
	probed := map[string]int{}
	for _, pt := range plan.Points {
		if pt.Program != uprobe.SlogHandle && pt.Program != uprobe.LogFunc {
			continue
		}
		fn, ok := funcs[pt.Func]
		if !ok || pt.Address < fn.Value || pt.Address >= fn.Value+fn.Size {
			t.Errorf("%s probe for %s at %#x, outside its symbol %+v", pt.Program, pt.Func, pt.Address, fn)
			continue
		}
		probed[pt.Func]++
		code := make([]byte, 16)
		if _, err := text.ReadAt(code, int64(pt.Address-text.Addr)); err != nil {
			t.Fatal(err)
		}
		if msg := check(pt, code); msg != "" {
			t.Errorf("%s probe in %s at %#x: %s", pt.Program, pt.Func, pt.Address, msg)
		}
	}
	for name := range funcs {
		if probed[name] != 1 {
			t.Errorf("%s: %d probes, want 1", name, probed[name])
		}
	}
}
