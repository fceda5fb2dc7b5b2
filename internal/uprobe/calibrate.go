package uprobe

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/bpf"
)

// HitCost is what one uprobe hit costs a process on this machine, measured
// by MeasureHitCost.
type HitCost struct {
	// Emulated is a probe where entry probes go, after the stack check:
	// on amd64 the prologue's PUSHQ BP, which the kernel emulates; on
	// arm64 the store of the link register that opens the frame, which
	// the arm64 kernel single-steps (it simulates only branches, ADR/ADRP
	// and literal loads).
	Emulated time.Duration
	// Stepped is a probe on an instruction the kernel single-steps out of
	// line: on amd64 a RET, where the fallback spawn probes go, or a
	// function's first instruction; on arm64 a function's first
	// instruction, the stack check's load of g.stackguard0.
	Stepped time.Duration
	// Attach and Detach are the CPU time the kernel spends placing one
	// uprobe in a process and taking it out (the breakpoint written into
	// a copy of the text page, under the process's memory map lock): what
	// a duty cycle costs per probe, charged to the target as if it paid
	// all of it. With multi, measured as half of a uprobe_multi link of
	// two probes.
	Attach, Detach time.Duration
}

// calibrationCalls is the number of calls timed per measurement.
const calibrationCalls = 1000

// calibrationCall is the function the calibration probes, in ctxwatch's own
// binary: the same prologue as context.WithValue (stack check, PUSHQ BP),
// and a RET.
//
//go:noinline
func calibrationCall(x uint64) uint64 { return calibrationLeaf(x) + 1 }

//go:noinline
func calibrationLeaf(x uint64) uint64 { return x * 3 }

// ErrCalibration means the cost of a probe hit could not be measured.
var ErrCalibration = errors.New("cannot measure the cost of a probe hit")

// MeasureHitCost attaches an empty eBPF program, with uprobes limited to
// this process, to a function of ctxwatch's own executable, at the
// prologue's PUSHQ BP and then at its RET, and times calls of it in thread
// CPU time (on a busy machine, waiting for a CPU is no probe's cost; the
// trap's kernel time is the thread's). Each measurement is the median of
// three, less the call's own cost measured without probes. It needs two
// attaches and two detaches: a few tens of milliseconds of CPU, and the
// detaches wait for RCU grace periods. With multi (the probes will be
// placed by uprobe_multi links: Probes.Multi) the calibration's uprobes
// are placed the same way, which needs no perf event (and so, where the
// kernel requires CAP_SYS_ADMIN for those, not that capability either),
// and Attach and Detach are measured on one link of both points.
func MeasureHitCost(multi bool) (HitCost, error) {
	var hc HitCost
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		return hc, fmt.Errorf("%w: on %s", ErrCalibration, runtime.GOARCH)
	}
	exe, err := os.Executable()
	if err != nil {
		return hc, fmt.Errorf("%w: find own executable: %w", ErrCalibration, err)
	}
	offPush, offRet, err := calibrationPoints(exe)
	if err != nil {
		return hc, fmt.Errorf("%w: %w", ErrCalibration, err)
	}
	spec, err := bpf.LoadEmpty()
	if err != nil {
		return hc, fmt.Errorf("load empty eBPF spec: %w", err)
	}
	if multi {
		for _, ps := range spec.Programs {
			ps.AttachType = ebpf.AttachTraceUprobeMulti
		}
	}
	var objs bpf.EmptyObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return hc, fmt.Errorf("load empty eBPF program: %w", err)
	}
	defer objs.Close()
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return hc, fmt.Errorf("open own executable: %w", err)
	}
	attach := func(offs ...uint64) (link.Link, error) {
		if multi {
			return ex.UprobeMulti(nil, objs.Empty, &link.UprobeMultiOptions{Addresses: offs, PID: uint32(os.Getpid())})
		}
		return ex.Uprobe("", objs.Empty, &link.UprobeOptions{Address: offs[0], PID: os.Getpid()})
	}
	// Thread CPU time is only meaningful on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	bare := median3(timeCalls)
	for _, m := range []struct {
		dst *time.Duration
		off uint64
	}{{&hc.Emulated, offPush}, {&hc.Stepped, offRet}} {
		t0 := threadTime()
		l, err := attach(m.off)
		if err != nil {
			return hc, fmt.Errorf("attach calibration uprobe: %w", err)
		}
		hc.Attach = max(hc.Attach, threadTime()-t0)
		probed := median3(timeCalls)
		t0 = threadTime()
		if err := l.Close(); err != nil {
			return hc, fmt.Errorf("detach calibration uprobe: %w", err)
		}
		hc.Detach = max(hc.Detach, threadTime()-t0)
		*m.dst = max(probed-bare, time.Nanosecond)
	}
	if multi {
		// A link's own cost shared by its probes: one link of both.
		t0 := threadTime()
		l, err := attach(offPush, offRet)
		if err != nil {
			return hc, fmt.Errorf("attach calibration uprobe_multi link: %w", err)
		}
		hc.Attach = (threadTime() - t0) / 2
		t0 = threadTime()
		if err := l.Close(); err != nil {
			return hc, fmt.Errorf("detach calibration uprobe_multi link: %w", err)
		}
		hc.Detach = (threadTime() - t0) / 2
	}
	hc.Attach, hc.Detach = max(hc.Attach, time.Nanosecond), max(hc.Detach, time.Nanosecond)
	return hc, nil
}

func median3(f func() time.Duration) time.Duration {
	ds := []time.Duration{f(), f(), f()}
	slices.Sort(ds)
	return ds[1]
}

// calibrationPoints decodes calibrationCall in the executable file and
// returns the file offsets of its PUSHQ BP and of its first RET.
func calibrationPoints(exe string) (push, ret uint64, err error) {
	entry := uint64(runtime.FuncForPC(reflect.ValueOf(calibrationCall).Pointer()).Entry())
	off, err := SelfFileOffset(exe, entry)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(exe)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	code := make([]byte, 256)
	n, err := f.ReadAt(code, int64(off))
	if n == 0 {
		return 0, 0, fmt.Errorf("read calibration function: %w", err)
	}
	code = code[:n]
	if runtime.GOARCH == "arm64" {
		return calibrationPointsARM64(off, code)
	}
	for pc := 0; pc < len(code) && ret == 0; {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			break
		}
		switch {
		case inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP && push == 0:
			push = off + uint64(pc)
		case inst.Op == x86asm.RET:
			ret = off + uint64(pc)
		}
		pc += inst.Len
	}
	if push == 0 || ret == 0 {
		return 0, 0, errors.New("no PUSHQ BP and RET in the calibration function")
	}
	return push, ret, nil
}

// calibrationPointsARM64 returns, for the arm64 code of calibrationCall at
// file offset off, the instruction after the stack check's conditional
// branch (where entry probes go: internal/target's ProbeAddr) and the
// function's first instruction.
func calibrationPointsARM64(off uint64, code []byte) (entry, first uint64, err error) {
	for pc := 0; pc+4 <= len(code) && pc < 8*4; pc += 4 {
		inst, err := arm64asm.Decode(code[pc : pc+4])
		if err != nil {
			break
		}
		if _, cond := inst.Args[0].(arm64asm.Cond); inst.Op == arm64asm.B && cond {
			return off + uint64(pc) + 4, off, nil
		}
	}
	return 0, 0, errors.New("no stack check's conditional branch in the calibration function")
}

// SelfFileOffset converts a run-time address of this process's text into
// an offset in its executable file exe, where a uprobe on it goes. Only
// program headers are read.
func SelfFileOffset(exe string, addr uint64) (uint64, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var bias uint64
	if f.Type == elf.ET_DYN {
		// A PIE: the text mapping's start less its link-time address.
		bias, err = LoadBias(os.Getpid(), f)
		if err != nil {
			return 0, err
		}
	}
	link := addr - bias
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && link >= p.Vaddr && link < p.Vaddr+p.Filesz {
			return link - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x not in an executable segment of %s", addr, exe)
}

// timeCalls returns the thread CPU time of one calibrationCall, averaged
// over calibrationCalls calls.
func timeCalls() time.Duration {
	var sink uint64
	start := threadTime()
	for i := range uint64(calibrationCalls) {
		sink += calibrationCall(i)
	}
	d := threadTime() - start
	if sink == 1 {
		fmt.Fprint(os.Stderr, "") // keeps sink live
	}
	return d / calibrationCalls
}

func threadTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err) // cannot fail for the calling thread
	}
	return time.Duration(ts.Nano())
}
