package target

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// ErrNotInstruction means an address is not where an instruction of its
// function starts: a breakpoint there would change the instruction it
// lands in, and the program would run a different one.
var ErrNotInstruction = errors.New("not an instruction boundary")

// CheckInstruction returns nil if addr is the first byte of an instruction
// of fn. On amd64 it decodes fn from its entry up to addr (Go puts no data
// in its functions' code, so a linear decode finds every instruction); an
// undecodable byte before addr is an error too, since the boundary cannot
// then be known. On arm64 every instruction is 4 bytes, aligned.
func (b *Binary) CheckInstruction(fn Func, addr uint64) error {
	if addr < fn.Entry || addr >= fn.End {
		return fmt.Errorf("%s+%#x: outside the function [%#x,%#x): %w", fn.Name, addr-fn.Entry, fn.Entry, fn.End, ErrNotInstruction)
	}
	off := addr - fn.Entry
	if b.Arch == "arm64" {
		if off%4 != 0 {
			return fmt.Errorf("%s+%#x: not 4-byte aligned: %w", fn.Name, off, ErrNotInstruction)
		}
		return nil
	}
	// The longest x86 instruction is 15 bytes: read enough to decode the
	// one addr may be inside of.
	code, err := b.readCode(fn.Entry, min(off+15, fn.End-fn.Entry))
	if err != nil {
		return fmt.Errorf("%s+%#x: %w", fn.Name, off, err)
	}
	pc := uint64(0)
	for pc < off {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return fmt.Errorf("%s+%#x: cannot decode the instruction at +%#x before it: %v: %w", fn.Name, off, pc, err, ErrNotInstruction)
		}
		if pc+uint64(inst.Len) > off {
			return fmt.Errorf("%s+%#x: inside the %d-byte instruction at +%#x (%v): %w", fn.Name, off, inst.Len, pc, inst, ErrNotInstruction)
		}
		pc += uint64(inst.Len)
	}
	return nil
}

// OpenedPath returns a path that names the very file Open inspected, for
// as long as the Binary is open: /proc/self/fd/N. The path Open was given
// may name another file by the time probes are attached (a process's
// /proc/PID/exe changes when it executes another program), and offsets
// planned for one file must never be attached to another.
func (b *Binary) OpenedPath() string {
	return fmt.Sprintf("/proc/self/fd/%d", b.file.Fd())
}
