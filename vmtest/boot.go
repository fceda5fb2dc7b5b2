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
	seconds  float64
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

// qemuArgs is the command line that boots k with the initramfs.
func qemuArgs(k kernel, initrd string, mem string, cpus int) []string {
	args := []string{
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
		"-serial", "stdio",
		"-m", mem, "-smp", strconv.Itoa(cpus),
		"-kernel", k.vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4 random.trust_cpu=on",
	}
	if haveKVM() {
		return append(args, "-accel", "kvm", "-cpu", "host")
	}
	// TCG: single-threaded (multi-threaded TCG let a guest CPU run a stale
	// int3 of the kernel's live patching: an oops in __schedule on 6.12);
	// "max" emulates RDRAND, so the guest's crng is ready at once.
	return append(args, "-accel", "tcg,thread=single", "-cpu", "max")
}

// boot runs one kernel to its end or its time limit, streaming the console
// with a prefix and collecting the results.
func boot(k kernel, initrd, mem string, cpus int, limit time.Duration, console io.Writer) outcome {
	o := outcome{kernel: k, suites: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(k, initrd, mem, cpus)...)
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
	suite := ""
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintf(console, "%s%s\n", prefix, line) // one write per line: VMs in parallel do not mix lines
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

// haveKVM says whether qemu can use KVM here.
func haveKVM() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
