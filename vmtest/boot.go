package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// accel is how qemu runs the guest's CPUs.
type accel string

const (
	accelKVM accel = "kvm" // the host's CPU, through /dev/kvm
	accelTCG accel = "tcg" // emulated: ten times slower or more
)

// vmConfig is what every boot shares.
type vmConfig struct {
	arch    arch
	initrd  string
	mem     string
	cpus    int
	limit   time.Duration // per boot
	grace   time.Duration // under KVM, for the guest to start its init (kvmWatch)
	console io.Writer     // the guests' consoles, a line at a time
}

// outcome is what one kernel's boot produced.
type outcome struct {
	kernel   kernel
	accel    accel
	passed   []string // top-level tests, as "suite.TestName"
	failed   []string
	skipped  []string       // with the reason, when the test gave one
	suites   map[string]int // exit status per test binary
	done     bool           // the init reached its end
	timedOut bool
	seconds  float64
	kvmFault string // under KVM: why the guest never started its init ("" when it did)
	err      error
}

func (o outcome) ok() bool {
	if o.err != nil || !o.done || o.timedOut || len(o.failed) > 0 {
		return false
	}
	for _, rc := range o.suites {
		if rc != 0 {
			return false
		}
	}
	return true
}

var (
	resultRE = regexp.MustCompile(`^VMTEST-RESULT (\S+) rc=(\d+)`)
	startRE  = regexp.MustCompile(`^VMTEST-START (\S+)`)
	testRE   = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (Test\S*)`)
)

// initMarker is the first line init.sh prints: the guest's kernel booted
// and unpacked the initramfs.
const initMarker = "VMTEST-INIT"

// kvmInternal begins what qemu prints when KVM cannot run a guest
// instruction (an emulation failure); qemu then pauses the guest and waits.
const kvmInternal = "KVM internal error"

// kvmGrace is how long a KVM guest has to print initMarker (vmConfig.grace). Under working
// KVM the kernel boots and unpacks the initramfs in a few seconds. Where
// /dev/kvm opens but cannot run a stock kernel (nested KVM without
// hardware virtualization, such as a PVM host), the guest dies in its
// first instructions, or crawls through the instruction emulator.
const kvmGrace = 30 * time.Second

// tcgSlow is $CTXWATCH_TEST_SLOW under TCG for amd64 guests: it stretches
// the integration tests' waits (30s for an attach) 4 times (arch.slow).
const tcgSlow = "4"

// qemuArgs is the command line that boots k with the initramfs under a.
func qemuArgs(k kernel, vm vmConfig, a accel) []string {
	cmdline := "console=" + vm.arch.console + " rdinit=/init panic=-1 quiet loglevel=4 random.trust_cpu=on"
	if a == accelTCG {
		// The kernel hands a parameter it does not know (without a dot)
		// to init as an environment variable: the same initramfs serves
		// both accelerators.
		cmdline += " CTXWATCH_TEST_SLOW=" + vm.arch.slow
	}
	args := []string{
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
		"-serial", "stdio",
		"-m", vm.mem, "-smp", strconv.Itoa(vm.cpus),
		"-kernel", k.vmlinuz, "-initrd", vm.initrd,
		"-append", cmdline,
	}
	if a == accelKVM {
		return append(args, "-accel", "kvm", "-cpu", "host")
	}
	return append(args, vm.arch.tcgArgs...)
}

// kvmWatch decides from a KVM guest's console whether KVM runs it: it does
// once the init prints initMarker; it does not when qemu reports a KVM
// internal error first, when qemu ends first, or when the grace time
// passes first. Its methods are safe to call from a timer. (qemu's own
// messages share the pipe with the serial console, so a marker is looked
// for anywhere in a line.)
type kvmWatch struct {
	mu      sync.Mutex
	started bool   // initMarker seen
	fault   string // why KVM does not run the guest; "" while it may
	said    string // before initMarker: qemu's first error line, else the last line
}

// line takes one console line and says whether to kill qemu: after a KVM
// internal error the guest is paused for good, before or after its init
// started.
func (w *kvmWatch) line(s string) (kill bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.Contains(s, initMarker) {
		w.started = true
		return false
	}
	if !w.started && strings.TrimSpace(s) != "" && !strings.Contains(w.said, "error") {
		w.said = strings.TrimSpace(s)
	}
	if !strings.Contains(s, kvmInternal) {
		return false
	}
	if !w.started && w.fault == "" {
		w.fault = "qemu: " + strings.TrimSpace(s)
	}
	return true
}

// expire is called when grace has passed since qemu started, and says
// whether to kill qemu.
func (w *kvmWatch) expire(grace time.Duration) (kill bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.fault != "" {
		return false
	}
	w.fault = fmt.Sprintf("no init within %v", grace)
	return true
}

// ended is called when qemu has exited, with what Wait returned, and says
// why KVM did not run the guest: "" when the init started.
func (w *kvmWatch) ended(err error) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return ""
	}
	if w.fault == "" {
		w.fault = "qemu ended before the init started"
		if err != nil {
			w.fault = fmt.Sprintf("qemu ended (%v) before the init started", err)
		}
		if w.said != "" {
			w.fault += fmt.Sprintf(", saying %q", w.said)
		}
	}
	return w.fault
}

// boot runs one kernel under a to its end or its time limit, streaming the
// console with a prefix and collecting the results. Under KVM, a guest
// that does not start its init (kvmWatch) is killed at once, with
// outcome.kvmFault saying why.
func boot(k kernel, vm vmConfig, a accel) outcome {
	o := outcome{kernel: k, accel: a, suites: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), vm.limit)
	defer cancel()
	qctx, kill := context.WithCancel(ctx)
	defer kill()
	cmd := exec.CommandContext(qctx, vm.arch.qemu, qemuArgs(k, vm, a)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		o.err = err
		return o
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		o.err = fmt.Errorf("%s (apt-get install %s): %w", vm.arch.qemu, vm.arch.qemuPkg, err)
		return o
	}
	var watch *kvmWatch
	if a == accelKVM {
		watch = &kvmWatch{}
		t := time.AfterFunc(vm.grace, func() {
			if watch.expire(vm.grace) {
				kill()
			}
		})
		defer t.Stop()
	}
	prefix := "[" + k.series + "] "
	suite := ""
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintf(vm.console, "%s%s\n", prefix, line) // one write per line: VMs in parallel do not mix lines
		if watch != nil && watch.line(line) {
			if o.err == nil {
				o.err = fmt.Errorf("qemu: %s (killed: the guest stays paused)", line)
			}
			kill()
		}
		if m := startRE.FindStringSubmatch(line); m != nil {
			suite = m[1]
			o.suites[suite] = -1 // started, not finished
		}
		if m := resultRE.FindStringSubmatch(line); m != nil {
			o.suites[m[1]], _ = strconv.Atoi(m[2])
		}
		if line == "VMTEST-DONE" {
			o.done = true
		}
		if m := testRE.FindStringSubmatch(line); m != nil {
			name := suite + "." + m[2]
			switch m[1] {
			case "PASS":
				o.passed = append(o.passed, name)
			case "FAIL":
				o.failed = append(o.failed, name)
			case "SKIP":
				o.skipped = append(o.skipped, name)
			}
		}
	}
	err = cmd.Wait()
	o.seconds = time.Since(start).Seconds()
	if watch != nil {
		if o.kvmFault = watch.ended(err); o.kvmFault != "" {
			o.err = fmt.Errorf("KVM does not run the guest: %s", o.kvmFault)
			return o
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		o.timedOut = true
		o.err = fmt.Errorf("time limit %v reached", vm.limit)
	} else if err != nil && !o.done && o.err == nil {
		o.err = fmt.Errorf("qemu: %w", err)
	}
	if !o.done && o.err == nil {
		o.err = errors.New("the VM stopped before the tests ended (kernel panic?)")
	}
	return o
}

// kvmUsable says why qemu cannot use KVM here, or nil when /dev/kvm opens
// (which does not yet mean that KVM runs a guest: see kvmWatch).
func kvmUsable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// workSpace is the disk a run takes in the temporary directory at its
// peak: the test binaries and targets built for the guest (about 250 MB),
// and the initramfs that copies them with Jaeger and busybox (about
// 400 MB), with room for the Go toolchain's own temporary files.
const workSpace = 1536 << 20

// checkFree says, before anything is built, when dir has less than need
// bytes free: a run that fills the disk fails half-way, in a go build or
// in the initramfs, and fills it for everything else on the machine too.
func checkFree(dir string, need uint64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("free space in %s: %w", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < need {
		return fmt.Errorf("%s has %d MB free; a run needs about %d MB there (set TMPDIR to a directory with room)", dir, free>>20, need>>20)
	}
	return nil
}
