package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Consoles of KVM boots as qemu 7.2 printed them on a host whose /dev/kvm
// is a nested KVM without hardware virtualization (kvm_pvm under
// Firecracker), cut short.
var (
	// -cpu host: qemu aborts at once.
	consoleMSR = []string{
		"qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69",
		"qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.",
	}
	// 5.10 with -cpu host,-arch-capabilities: the kernel boots for a minute
	// through the instruction emulator and dies on a lock cmpxchg16b; qemu
	// pauses the guest and waits.
	consoleEmulation = []string{
		"Probing EDD (edd=off to disable)... ok",
		"[   24.361728] Memory: 226540K/1048056K available (12297K kernel code, 2560K rwdata, 7036K rodata, 2488K init, 3676K bss, 55540K reserved, 0K cma-reserved)",
		"KVM internal error. Suberror: 1",
		"extra data[0]: 0x0000000000000001",
		"emulation failure",
		"RIP=ffffffff8b3e2a3d RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0",
		"Code=6b 80 48 8b 4c 24 68 41 f6 43 0b 40 74 57 48 89 f0 4c 89 f2 <f0> 49 0f c7 4c 24 20 74 7a",
	}
	// A guest KVM runs: the init starts, the tests run.
	consoleGood = []string{
		"VMTEST-INIT",
		"vmtest: kernel 5.10.0-46-cloud-amd64, 2 cpus, 3030000 kB",
		"VMTEST-START ctxwatch",
		"--- PASS: TestUsageErrors (0.01s)",
		"VMTEST-RESULT ctxwatch rc=0 seconds=1",
		"VMTEST-DONE",
	}
)

func TestKVMWatch(t *testing.T) {
	for _, c := range []struct {
		name    string
		console []string
		killAt  int   // the line after which to kill qemu; -1: none
		expire  bool  // the grace time passes after the console
		exit    error // qemu's exit
		fault   string
	}{
		{"MSR abort", consoleMSR, -1, false, errors.New("signal: aborted"),
			`qemu ended (signal: aborted) before the init started, saying "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"`},
		{"emulation failure", consoleEmulation, 2, false, errors.New("signal: killed"), "qemu: KVM internal error. Suberror: 1"},
		{"silent", consoleEmulation[:2], -1, true, errors.New("signal: killed"), "no init within 30s"},
		{"no output", nil, -1, false, errors.New("exit status 1"), "qemu ended (exit status 1) before the init started"},
		{"works", consoleGood, -1, true, nil, ""},
		// After the init started, a KVM internal error kills the paused
		// guest but is a failure of that boot, not a reason to fall back.
		{"dies in the tests", append(consoleGood[:4:4], consoleEmulation[2:]...), 4, false, errors.New("signal: killed"), ""},
		// A marker glued to a partial line of the other stream.
		{"glued", []string{"[    1.2] random: crng init doneVMTEST-INIT"}, -1, true, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var w kvmWatch
			killAt := -1
			for i, l := range c.console {
				if w.line(l) && killAt < 0 {
					killAt = i
				}
			}
			if killAt != c.killAt {
				t.Errorf("killed after line %d, want %d", killAt, c.killAt)
			}
			if c.expire {
				if kill := w.expire(kvmGrace); kill != (c.fault != "") {
					t.Errorf("expire: kill %v, want %v", kill, c.fault != "")
				}
			}
			if got := w.ended(c.exit); got != c.fault {
				t.Errorf("fault %q, want %q", got, c.fault)
			}
		})
	}
}

func TestQemuArgsSlow(t *testing.T) {
	vm := vmConfig{arch: arches["amd64"], initrd: "initrd", mem: "1G", cpus: 2}
	for a, want := range map[accel]bool{accelKVM: false, accelTCG: true} {
		args := qemuArgs(kernel{vmlinuz: "vmlinuz"}, vm, a)
		cmdline := ""
		for i, arg := range args {
			if arg == "-append" {
				cmdline = args[i+1]
			}
		}
		if got := strings.Contains(" "+cmdline+" ", " CTXWATCH_TEST_SLOW="+tcgSlow+" "); got != want {
			t.Errorf("%s: kernel command line %q: CTXWATCH_TEST_SLOW=%s is there: %v, want %v", a, cmdline, tcgSlow, got, want)
		}
	}
}

// fakeQemu plays qemu on a host like the one of consoleEmulation: under
// KVM it prints the emulation failure and waits, paused (or with
// $FAKE_QEMU=crawl, prints nothing more, as the guest crawls through the
// instruction emulator); under TCG it
// boots, and its test passes when the kernel command line has the TCG
// slowdown.
const fakeQemu = `#!/bin/sh
case "$*" in
*"-accel kvm"*)
	echo "Probing EDD (edd=off to disable)... ok"
	[ "$FAKE_QEMU" = crawl ] && exec sleep 600
	echo "KVM internal error. Suberror: 1" >&2
	echo "emulation failure" >&2
	exec sleep 600 ;;
esac
echo VMTEST-INIT
echo "VMTEST-START integration"
case "$*" in
*CTXWATCH_TEST_SLOW=4*) echo "--- PASS: TestSlow (0.00s)"; rc=0 ;;
*) echo "--- FAIL: TestSlow (0.00s)"; rc=1 ;;
esac
echo "VMTEST-RESULT integration rc=$rc seconds=0"
echo VMTEST-DONE
`

// TestFallback boots a fake qemu: under auto, the KVM guest that dies is
// killed at once and the kernel boots again under TCG; under kvm, the
// boot fails as fast, without a second.
func TestFallback(t *testing.T) {
	withFakeQemu(t)
	vm := vmConfig{arch: arches["amd64"], initrd: "initrd", mem: "1G", cpus: 2, limit: time.Minute, grace: time.Minute, console: io.Discard}
	k := kernel{series: "5.10", release: "5.10.0-46-cloud-amd64", vmlinuz: "vmlinuz"}

	var logged []string
	logf := func(format string, args ...any) { logged = append(logged, format) }
	start := time.Now()
	o := bootKernel(k, vm, "auto", logf)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("auto took %v: the paused KVM guest was not killed at once", took)
	}
	if !o.ok() || o.accel != accelTCG || len(o.passed) != 1 {
		t.Errorf("auto: accel %s, passed %v, failed %v, err %v; want one pass under tcg", o.accel, o.passed, o.failed, o.err)
	}
	if n := len(logged); n != 2 || !strings.Contains(logged[1], "KVM does not run it") {
		t.Errorf("auto logged %q, want the boot and the fallback", logged)
	}

	o = bootKernel(k, vm, string(accelKVM), func(string, ...any) {})
	if o.ok() || o.accel != accelKVM || o.kvmFault != "qemu: KVM internal error. Suberror: 1" {
		t.Errorf("kvm: accel %s, fault %q, err %v; want a failure under kvm", o.accel, o.kvmFault, o.err)
	}
}

// TestFallbackSilent: a KVM guest that says nothing is killed when the
// grace time has passed, and booted again under TCG.
func TestFallbackSilent(t *testing.T) {
	withFakeQemu(t)
	t.Setenv("FAKE_QEMU", "crawl")
	vm := vmConfig{arch: arches["amd64"], initrd: "initrd", mem: "1G", cpus: 2, limit: time.Minute, grace: 200 * time.Millisecond, console: io.Discard}
	k := kernel{series: "5.10", release: "5.10.0-46-cloud-amd64", vmlinuz: "vmlinuz"}
	start := time.Now()
	o := bootKernel(k, vm, "auto", func(string, ...any) {})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v: the silent KVM guest was not killed after its grace time", took)
	}
	if !o.ok() || o.accel != accelTCG {
		t.Errorf("accel %s, err %v; want a pass under tcg", o.accel, o.err)
	}
	o = bootKernel(k, vm, string(accelKVM), func(string, ...any) {})
	if o.kvmFault != "no init within 200ms" {
		t.Errorf("kvm: fault %q, err %v; want no init within 200ms", o.kvmFault, o.err)
	}
}

// withFakeQemu puts fakeQemu first on $PATH.
func withFakeQemu(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "qemu-system-x86_64"), []byte(fakeQemu), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestCheckFree: a run is refused before building when the temporary
// directory cannot hold it, with what it has and what it needs.
func TestCheckFree(t *testing.T) {
	dir := t.TempDir()
	if err := checkFree(dir, 1); err != nil {
		t.Errorf("1 byte needed: %v", err)
	}
	err := checkFree(dir, 1<<60)
	if err == nil || !strings.Contains(err.Error(), "MB free; a run needs about 1099511627776 MB") || !strings.Contains(err.Error(), "TMPDIR") {
		t.Errorf("an exabyte needed: %v; want how much is free, how much is needed, and TMPDIR", err)
	}
	if err := checkFree(filepath.Join(dir, "missing"), 1); err == nil {
		t.Error("a missing directory: no error")
	}
}
