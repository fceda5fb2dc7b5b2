package main

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// --- the steps of a probe's work on this kernel ---

// costCalls is how many calls of costCall each program is timed over, per
// round: its probe sits on the function's first instruction, which the
// kernel single-steps (some 6 µs a call), and the run time counted is the
// program's alone.
const (
	costCalls  = 20000
	costRounds = 3
)

// costSrc is what the read programs read: memory of this process, as the
// probes read the target's.
var costSrc [64]uint64

//go:noinline
func costCall(x uint64) uint64 { return x*7 + 1 }

// costSteps are bpf/costs.c's programs, in the table's order.
var costSteps = []struct{ prog, what string }{
	{"cost_empty", "empty program (the run-time statistics' own clock reads; subtracted below)"},
	{"cost_read_stack", "read 16 bytes of user memory into the program's stack (`bpf_probe_read_user`)"},
	{"cost_read_stack_256", "read 256 bytes into the stack"},
	{"cost_lookup_scratch", "per-CPU array lookup"},
	{"cost_read_map", "per-CPU array lookup, then read 16 bytes into its value (where the context walk reads: its slot)"},
	{"cost_update_warm", "LRU hash update of one of 64 keys (elements in the cache)"},
	{"cost_lookup_state", "LRU hash lookup (the goroutine state's; a key cost_update_warm made)"},
	{"cost_insert_new", "LRU hash insert of a new key, 120-byte value, map of 2^17 (a traced spawn's state)"},
	{"cost_ringbuf", "ring buffer reserve of 264 bytes (an event) and discard"},
	{"cost_ktime", "`bpf_ktime_get_ns`"},
}

// costsBench times each step of bpf/costs.c by the kernel's run-time
// statistics (time per run of the program, median of costRounds rounds)
// and writes the table.
func (b *bench) costsBench() (string, error) {
	spec, err := bpf.LoadCosts()
	if err != nil {
		return "", fmt.Errorf("load costs spec: %w", err)
	}
	if err := spec.Variables["src"].Set(uint64(uintptr(unsafe.Pointer(&costSrc[0])))); err != nil {
		return "", fmt.Errorf("set src: %w", err)
	}
	var objs bpf.CostsObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return "", fmt.Errorf("load costs programs: %w", err)
	}
	defer objs.Close()
	progs := map[string]*ebpf.Program{}
	v := reflect.ValueOf(objs.CostsPrograms)
	for i := range v.NumField() {
		progs[v.Type().Field(i).Tag.Get("ebpf")] = v.Field(i).Interface().(*ebpf.Program)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return "", fmt.Errorf("open own executable: %w", err)
	}
	stats, err := ebpf.EnableStats(0) // BPF_STATS_RUN_TIME
	if err != nil {
		return "", fmt.Errorf("enable run-time statistics: %w", err)
	}
	defer stats.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// By address: `go run` leaves the binary without a symbol table.
	off, err := uprobe.SelfFileOffset(exe, uint64(runtime.FuncForPC(reflect.ValueOf(costCall).Pointer()).Entry()))
	if err != nil {
		return "", err
	}
	per := map[string][]float64{}
	for range costRounds {
		for _, st := range costSteps {
			ns, err := timeProgram(ex, off, progs[st.prog])
			if err != nil {
				return "", fmt.Errorf("%s: %w", st.prog, err)
			}
			per[st.prog] = append(per[st.prog], ns)
		}
	}
	empty := median(per["cost_empty"])
	var out strings.Builder
	fmt.Fprintf(&out, "Each step alone in a program of its own (bpf/costs.c) on a probe of a function of the bench, run %d times per round, "+
		"time per run from the kernel's run-time statistics, median of %d rounds; the read programs read the bench's own memory.\n\n", costCalls, costRounds)
	out.WriteString("| step | ns per run | less the empty program |\n|---|---:|---:|\n")
	for _, st := range costSteps {
		ns := median(per[st.prog])
		if st.prog == "cost_empty" {
			fmt.Fprintf(&out, "| %s | %.0f | - |\n", st.what, ns)
			continue
		}
		fmt.Fprintf(&out, "| %s | %.0f | %.0f |\n", st.what, ns, ns-empty)
	}
	return out.String(), nil
}

// timeProgram attaches prog at file offset off of this process's
// executable and returns its run time per run over costCalls calls.
func timeProgram(ex *link.Executable, off uint64, prog *ebpf.Program) (float64, error) {
	l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: off, PID: os.Getpid()})
	if err != nil {
		return 0, fmt.Errorf("attach: %w", err)
	}
	defer l.Close()
	before, err := prog.Stats()
	if err != nil {
		return 0, err
	}
	var sink uint64
	for i := range uint64(costCalls) {
		sink += costCall(i)
	}
	after, err := prog.Stats()
	if err != nil {
		return 0, err
	}
	runs := after.RunCount - before.RunCount
	if runs < costCalls || sink == 0 {
		return 0, fmt.Errorf("%d runs for %d calls", runs, costCalls)
	}
	return float64(after.Runtime-before.Runtime) / float64(runs), nil
}
