package target

import (
	"errors"
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// maxPrologue is how many instructions ProbeAddr decodes looking for PUSHQ BP.
const maxPrologue = 8

// Placement says where ProbeAddr put an entry probe.
type Placement int

const (
	// AtFramePush is after the stack-growth check, on the instruction that
	// opens the frame: amd64's `PUSHQ BP` (Go 1.21 on), which the kernel
	// emulates, or arm64's first instruction after the check's branch.
	AtFramePush Placement = iota
	// AfterStackCheck is the first instruction after the stack-growth
	// check of an amd64 function with no `PUSHQ BP` (Go 1.17 to 1.20 open
	// the frame with `SUBQ $n, SP`): the kernel single-steps it, but the
	// probe fires once per call.
	AfterStackCheck
	// AtEntry is the function's first instruction: single-stepped, and it
	// fires again when morestack re-enters the function.
	AtEntry
)

// ProbeAddr returns where to place an entry uprobe on fn: after the
// stack-growth check (`CMPQ SP, 16(R14); JBE morestack`), on the first
// `PUSHQ BP` within the first few instructions, or else on the first
// instruction after the check's conditional jump. There the argument
// registers and R14 still hold their entry values and, unlike the first
// instruction, the probe fires once per call even when morestack
// re-enters the function: a second firing would count one call twice
// (a channel send would hand its element twice).
//
// If there is no stack check (a frameless function), or an instruction
// before it may write RAX, RBX, RCX, RDI, RSI, R8-R11, R14 or RSP,
// ProbeAddr returns fn.Entry and AtEntry.
func (b *Binary) ProbeAddr(fn Func) (addr uint64, at Placement, err error) {
	code, err := b.funcCode(fn)
	if err != nil {
		return 0, AtEntry, err
	}
	if b.Arch == "arm64" {
		addr, atEntry := b.probeAddrARM64(fn, code)
		if atEntry {
			return addr, AtEntry, nil
		}
		return addr, AtFramePush, nil
	}
	pc, afterCheck := 0, -1
	var prev x86asm.Inst
	for n := 0; n < maxPrologue && pc < len(code); n++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			break
		}
		if inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP {
			return fn.Entry + uint64(pc), AtFramePush, nil
		}
		if !prologueSafe(inst) {
			break
		}
		pc += inst.Len
		// The last conditional jump that ends a stack check (a big frame
		// has two: SP less the frame wrapping, then the comparison).
		if isCondJump(inst) && isStackCheck(prev) {
			afterCheck = pc
		}
		prev = inst
	}
	if afterCheck >= 0 && afterCheck < len(code) {
		return fn.Entry + uint64(afterCheck), AfterStackCheck, nil
	}
	return fn.Entry, AtEntry, nil
}

// isStackCheck reports whether inst compares with g.stackguard0, at
// 16(R14) (CMPQ SP, 16(R14), or a register holding SP less the frame).
func isStackCheck(inst x86asm.Inst) bool {
	if inst.Op != x86asm.CMP {
		return false
	}
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.R14 && m.Disp == 16 {
			return true
		}
	}
	return false
}

// isCondJump reports whether inst is a conditional jump: the end of the
// stack-growth check when prologueSafe instructions precede it.
func isCondJump(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO,
		x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP:
		return true
	}
	return false
}

// prologueSafe reports whether inst, found before PUSHQ BP, leaves the
// argument registers, R14 and RSP unchanged and does not transfer control
// unconditionally.
func prologueSafe(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.CMP, x86asm.TEST, x86asm.NOP,
		x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO,
		x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP:
		return true // write flags only
	case x86asm.LEA, x86asm.MOV, x86asm.SUB, x86asm.ADD:
		// Allowed when the destination is a scratch register, e.g. the
		// `MOVQ SP, R12; SUBQ $frame, R12; JCS` of functions with big frames.
		r, ok := inst.Args[0].(x86asm.Reg)
		return ok && !protectedReg(r)
	}
	return false
}

// protectedReg reports whether r is (part of) a register whose entry value a
// probe at ProbeAddr must see: the integer argument registers, R14 (g) or RSP.
func protectedReg(r x86asm.Reg) bool {
	switch reg64(r) {
	case x86asm.RAX, x86asm.RBX, x86asm.RCX, x86asm.RDI, x86asm.RSI,
		x86asm.R8, x86asm.R9, x86asm.R10, x86asm.R11, x86asm.R14, x86asm.RSP:
		return true
	}
	return false
}

// reg64 maps a general-purpose register of any width to its 64-bit register.
// Other registers are returned unchanged.
func reg64(r x86asm.Reg) x86asm.Reg {
	switch {
	case r >= x86asm.AH && r <= x86asm.BH:
		return [...]x86asm.Reg{x86asm.RAX, x86asm.RCX, x86asm.RDX, x86asm.RBX}[r-x86asm.AH]
	case r >= x86asm.AL && r <= x86asm.BL:
		return x86asm.RAX + (r - x86asm.AL)
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return x86asm.RSP + (r - x86asm.SPB)
	case r >= x86asm.AX && r <= x86asm.R15W:
		return x86asm.RAX + (r - x86asm.AX)
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return x86asm.RAX + (r - x86asm.EAX)
	}
	return r
}

// Returns lists the address of every RET instruction in fn (decoded with
// x86asm, or arm64asm for arm64 binaries).
func (b *Binary) Returns(fn Func) ([]uint64, error) {
	if b.Arch == "arm64" {
		code, err := b.funcCode(fn)
		if err != nil {
			return nil, err
		}
		return b.returnsARM64(fn, code)
	}
	var rets []uint64
	err := b.decodeAll(fn, func(addr uint64, inst x86asm.Inst) {
		if inst.Op == x86asm.RET {
			rets = append(rets, addr)
		}
	})
	return rets, err
}

// Call is a direct call instruction: CALL rel32 on amd64, BL on arm64.
type Call struct {
	Addr   uint64 // of the instruction
	Target uint64 // the callee's entry
}

// Calls lists fn's direct calls in address order.
func (b *Binary) Calls(fn Func) ([]Call, error) {
	if b.Arch == "arm64" {
		code, err := b.funcCode(fn)
		if err != nil {
			return nil, err
		}
		return b.callsARM64(fn, code)
	}
	var calls []Call
	err := b.decodeAll(fn, func(addr uint64, inst x86asm.Inst) {
		if inst.Op != x86asm.CALL {
			return
		}
		if rel, ok := inst.Args[0].(x86asm.Rel); ok {
			calls = append(calls, Call{Addr: addr, Target: addr + uint64(inst.Len) + uint64(int64(rel))})
		}
	})
	return calls, err
}

// CallTargets lists the distinct targets of fn's direct calls, in the
// order they first appear.
func (b *Binary) CallTargets(fn Func) ([]uint64, error) {
	calls, err := b.Calls(fn)
	if err != nil {
		return nil, err
	}
	var targets []uint64
	seen := make(map[uint64]bool)
	for _, c := range calls {
		if !seen[c.Target] {
			seen[c.Target] = true
			targets = append(targets, c.Target)
		}
	}
	return targets, nil
}

// decodeAll decodes fn linearly from Entry to End and calls visit for each
// instruction. Undecodable bytes are skipped one at a time; it is an error
// only when nothing at all decodes.
func (b *Binary) decodeAll(fn Func, visit func(addr uint64, inst x86asm.Inst)) error {
	code, err := b.funcCode(fn)
	if err != nil {
		return err
	}
	decoded := 0
	var firstErr error
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("at %#x: %w", fn.Entry+uint64(pc), err)
			}
			pc++
			continue
		}
		decoded++
		visit(fn.Entry+uint64(pc), inst)
		pc += inst.Len
	}
	if decoded == 0 {
		return fmt.Errorf("decode %s in %s: no instruction decoded: %w", fn.Name, b.Path, firstErr)
	}
	return nil
}

// funcCode reads fn's machine code.
func (b *Binary) funcCode(fn Func) ([]byte, error) {
	if fn.End <= fn.Entry {
		return nil, fmt.Errorf("read code of %s: empty range [%#x,%#x)", fn.Name, fn.Entry, fn.End)
	}
	code, err := b.readCode(fn.Entry, fn.End-fn.Entry)
	if err != nil {
		return nil, fmt.Errorf("read code of %s: %w", fn.Name, err)
	}
	return code, nil
}

// ErrNotDecoded means the instructions asked for are not decoded for the
// binary's architecture.
var ErrNotDecoded = errors.New("not decoded for this architecture")

// IndirectCalls lists the addresses of fn's calls through a register or
// memory (CALL reg, CALL [mem]; on arm64 BLR), in address order: method
// calls on an interface, and calls of func values.
func (b *Binary) IndirectCalls(fn Func) ([]uint64, error) {
	switch b.Arch {
	case "arm64":
		code, err := b.funcCode(fn)
		if err != nil {
			return nil, err
		}
		var calls []uint64
		err = b.decodeARM64(fn, code, func(addr uint64, inst arm64asm.Inst) {
			if inst.Op == arm64asm.BLR {
				calls = append(calls, addr)
			}
		})
		return calls, err
	case "amd64":
	default:
		return nil, fmt.Errorf("indirect calls of %s on %s: %w", fn.Name, b.Arch, ErrNotDecoded)
	}
	var calls []uint64
	err := b.decodeAll(fn, func(addr uint64, inst x86asm.Inst) {
		if inst.Op != x86asm.CALL {
			return
		}
		switch inst.Args[0].(type) {
		case x86asm.Reg, x86asm.Mem:
			calls = append(calls, addr)
		}
	})
	return calls, err
}
