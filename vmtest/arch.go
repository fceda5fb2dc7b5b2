package main

import (
	"debug/elf"
	"fmt"
	"runtime"
)

// arch is what booting a guest of one architecture takes: its kernel
// flavour, qemu, console and the GOARCH its binaries are built for.
type arch struct {
	goarch  string // GOARCH of the binaries in the initramfs, and Debian's architecture name
	machine elf.Machine
	triplet string // Debian's multiarch directory name
	flavour string // Debian's kernel flavour
	kernels string // the kernel series booted by default
	qemu    string // the qemu program
	qemuPkg string // the Debian package that has it
	// tcgArgs are qemu's machine, accelerator and CPU under TCG.
	tcgArgs []string
	cpus    int    // the VM's CPUs by default
	console string // the guest's serial console device
	// consoleOpt builds that console's driver into the kernel (needConfig).
	consoleOpt string
	// slow is $CTXWATCH_TEST_SLOW under TCG: how much the integration
	// tests' waits are stretched.
	slow string
}

var arches = map[string]arch{
	"amd64": {
		goarch:  "amd64",
		machine: elf.EM_X86_64,
		triplet: "x86_64-linux-gnu",
		flavour: "cloud-amd64",
		kernels: "5.10,6.1,6.12",
		cpus:    2,
		qemu:    "qemu-system-x86_64",
		qemuPkg: "qemu-system-x86",
		// Single-threaded (multi-threaded TCG let a guest CPU run a stale
		// int3 of the kernel's live patching: an oops in __schedule on
		// 6.12); "max" emulates RDRAND, so the guest's crng is ready at
		// once.
		tcgArgs:    []string{"-accel", "tcg,thread=single", "-cpu", "max"},
		console:    "ttyS0",
		consoleOpt: "CONFIG_SERIAL_8250_CONSOLE",
		slow:       "4",
	},
	"arm64": {
		goarch:  "arm64",
		machine: elf.EM_AARCH64,
		triplet: "aarch64-linux-gnu",
		flavour: "cloud-arm64",
		kernels: "6.1,6.12",
		// One: under TCG a vCPU is a host thread, and this machine's two
		// cores are shared.
		cpus:    1,
		qemu:    "qemu-system-aarch64",
		qemuPkg: "qemu-system-arm",
		// qemu's virt board, whose PL011 UART is the console. "max" with
		// pauth-impdef: the kernels sign their return addresses, and
		// qemu's emulation of the architected QARMA algorithm costs more
		// than the rest of the guest; the implementation-defined one is
		// cheap and the guest cannot tell.
		tcgArgs:    []string{"-M", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"},
		console:    "ttyAMA0",
		consoleOpt: "CONFIG_SERIAL_AMBA_PL011_CONSOLE",
		slow:       "8",
	},
}

// hostArch is the architecture of this machine: the only one KVM can run.
var hostArch = runtime.GOARCH

// archOf returns the arch named by -arch.
func archOf(name string) (arch, error) {
	a, ok := arches[name]
	if !ok {
		return arch{}, fmt.Errorf("-arch %q: want amd64 or arm64", name)
	}
	return a, nil
}
