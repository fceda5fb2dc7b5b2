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
	"time"
)

// outcome is what one kernel's boot produced.
type outcome struct {
	kernel   kernel
	passed   []string // top-level tests, as "suite.TestName"
	failed   []string
	skipped  []string       // with the reason, when the test gave one
	suites   map[string]int // exit status per test binary
	done     bool           // the init reached its end
	timedOut bool
	accel    string // kvm or tcg
	// kvmBroken says why a KVM guest was given up before its tests ran
	// (a nested KVM that opens but cannot run the guest): boot it again
	// under TCG.
	kvmBroken string
	seconds   float64
	err       error
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

// qemuArgs is the command line that boots k with the initramfs under
// accel (kvm or tcg).
func qemuArgs(k kernel, initrd string, mem string, cpus int, accel string) []string {
	cmdline := "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4 random.trust_cpu=on"
	if accel == "tcg" {
		// The kernel hands parameters it does not know to init as
		// environment: the tests stretch their waits (30s for an
		// attach) 4 times under emulation.
		cmdline += " CTXWATCH_TEST_SLOW=4"
	}
	args := []string{
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
		"-serial", "stdio",
		"-m", mem, "-smp", strconv.Itoa(cpus),
		"-kernel", k.vmlinuz, "-initrd", initrd,
		"-append", cmdline,
	}
	if accel == "kvm" {
		return append(args, "-accel", "kvm", "-cpu", "host")
	}
	// TCG: single-threaded (multi-threaded TCG let a guest CPU run a stale
	// int3 of the kernel's live patching: an oops in __schedule on 6.12);
	// "max" emulates RDRAND, so the guest's crng is ready at once.
	return append(args, "-accel", "tcg,thread=single", "-cpu", "max")
}

// kvmStartLimit is how long a KVM guest may take to reach its first test
// suite. Under KVM that takes seconds; a guest that has not by then, or
// whose qemu reports a KVM internal error (nested KVM that opens but
// cannot emulate what the guest kernel runs: a lock cmpxchg16b on 5.10,
// after which qemu sits paused), is given up and booted under TCG.
const kvmStartLimit = 3 * time.Minute

// boot runs one kernel to its end or its time limit, streaming the console
// with a prefix and collecting the results.
func boot(k kernel, initrd, mem string, cpus int, accel string, limit time.Duration, console io.Writer) outcome {
	o := outcome{kernel: k, suites: map[string]int{}, accel: accel}
	timed, cancelTimed := context.WithTimeout(context.Background(), limit)
	defer cancelTimed()
	ctx, cancel := context.WithCancelCause(timed)
	defer cancel(nil)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(k, initrd, mem, cpus, accel)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		o.err = err
		return o
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		o.err = fmt.Errorf("qemu-system-x86_64 (apt-get install qemu-system-x86): %w", err)
		return o
	}
	prefix := "[" + k.series + "] "
	suite, lastLine := "", ""
	var giveUp *time.Timer
	if accel == "kvm" {
		giveUp = time.AfterFunc(kvmStartLimit, func() {
			cancel(kvmBrokenError(fmt.Sprintf("no test suite started within %v", kvmStartLimit)))
		})
		defer giveUp.Stop()
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintf(console, "%s%s\n", prefix, line) // one write per line: VMs in parallel do not mix lines
		if line != "" {
			lastLine = " (last said: " + line + ")"
		}
		if accel == "kvm" && strings.Contains(line, "KVM internal error") && suite == "" {
			giveUp.Stop()
			cancel(kvmBrokenError("qemu: " + strings.TrimSpace(line)))
		}
		if m := startRE.FindStringSubmatch(line); m != nil {
			if giveUp != nil {
				giveUp.Stop()
			}
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
	if accel == "kvm" && suite == "" {
		// Never reached its tests: KVM that opens but does not work
		// (qemu aborts setting an MSR, or the guest dies on an
		// emulation failure and qemu sits paused).
		var broken kvmBrokenError
		switch {
		case errors.As(context.Cause(ctx), &broken):
			o.kvmBroken = string(broken)
		case err != nil:
			o.kvmBroken = "qemu: " + err.Error() + lastLine
		default:
			o.kvmBroken = "the guest stopped before its tests" + lastLine
		}
		o.err = fmt.Errorf("KVM guest given up: %s", o.kvmBroken)
		return o
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		o.timedOut = true
		o.err = fmt.Errorf("time limit %v reached", limit)
	} else if err != nil && !o.done {
		o.err = fmt.Errorf("qemu: %w", err)
	}
	if !o.done && o.err == nil {
		o.err = errors.New("the VM stopped before the tests ended (kernel panic?)")
	}
	return o
}

// kvmBrokenError is why a KVM guest was given up.
type kvmBrokenError string

func (e kvmBrokenError) Error() string { return string(e) }

// haveKVM says whether qemu can use KVM here.
func haveKVM() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
