package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestNoWritesToTargets: ctxwatch only reads the programs it watches. No
// eBPF program calls a helper that writes to user memory, changes what a
// traced function returns, or signals a process, except where listed in
// allowed with why; and none calls kernel functions (kfuncs), which the
// helper list would not cover.
func TestNoWritesToTargets(t *testing.T) {
	forbidden := map[asm.BuiltinFunc]string{
		asm.FnProbeWriteUser:   "writes into the target's memory",
		asm.FnOverrideReturn:   "changes what a traced function returns",
		asm.FnSendSignal:       "signals the target",
		asm.FnSendSignalThread: "signals the target",
	}
	type use struct {
		prog string
		fn   asm.BuiltinFunc
	}
	// on_exec stops a process that -- CMD started, right after exec,
	// until its probes are in (ctxwatch resumes it with SIGCONT).
	allowed := map[use]bool{{"on_exec", asm.FnSendSignal}: true}
	seen := map[use]bool{}
	for _, obj := range []string{"ctxwatch_x86_bpfel.o", "ctxwatch_arm64_bpfel.o", "follow_x86_bpfel.o", "follow_arm64_bpfel.o", "empty_x86_bpfel.o", "empty_arm64_bpfel.o"} {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatal(err)
		}
		for name, prog := range spec.Programs {
			for _, ins := range prog.Instructions {
				if ins.IsKfuncCall() {
					t.Errorf("%s: program %s calls a kfunc (%v): not allowed", obj, name, ins)
				}
				if !ins.IsBuiltinCall() {
					continue
				}
				fn := asm.BuiltinFunc(ins.Constant)
				why, bad := forbidden[fn]
				if !bad {
					continue
				}
				u := use{name, fn}
				seen[u] = true
				if !allowed[u] {
					t.Errorf("%s: program %s calls %v, which %s", obj, name, fn, why)
				}
			}
		}
	}
	// An allowance that is no longer used must go: it would let a new
	// use through unreviewed.
	for u := range allowed {
		if !seen[u] {
			t.Errorf("allowed %v in %s is not used any more: remove it from the list", u.fn, u.prog)
		}
	}
}
