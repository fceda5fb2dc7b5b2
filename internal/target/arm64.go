package target

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
)

// arm64 inspection. Go's arm64 functions start with the stack check
//
//	MOVD 16(R28), R16   // g.stackguard0 (g is R28)
//	CMP  R16, RSP
//	BLS  morestack
//	MOVD.W R30, -N(RSP) // save the link register: the frame starts
//
// (big frames compute SP-N into R16/R17 first). Arguments are in R0-R15.

// probeAddrARM64 returns the instruction after the stack check's
// conditional branch, when every instruction before it writes only the
// scratch registers R16/R17 or the flags; otherwise fn.Entry, atEntry.
func (b *Binary) probeAddrARM64(fn Func, code []byte) (uint64, bool) {
	for pc, n := 0, 0; n < maxPrologue && pc+4 <= len(code); n, pc = n+1, pc+4 {
		inst, err := arm64asm.Decode(code[pc : pc+4])
		if err != nil {
			break
		}
		if inst.Op == arm64asm.B {
			if _, cond := inst.Args[0].(arm64asm.Cond); cond {
				return fn.Entry + uint64(pc) + 4, false
			}
			break // an unconditional branch: not a stack check
		}
		if !prologueSafeARM64(inst) {
			break
		}
	}
	return fn.Entry, true
}

// prologueSafeARM64 reports whether inst, found before the stack check's
// branch, leaves the argument registers R0-R15, g (R28), the link register
// and SP unchanged.
func prologueSafeARM64(inst arm64asm.Inst) bool {
	switch inst.Op {
	case arm64asm.CMP, arm64asm.CMN, arm64asm.NOP:
		return true
	case arm64asm.LDR, arm64asm.MOV, arm64asm.SUB, arm64asm.ADD:
		switch r := inst.Args[0].(type) {
		case arm64asm.Reg:
			return r == arm64asm.X16 || r == arm64asm.X17
		case arm64asm.RegSP:
			return arm64asm.Reg(r) == arm64asm.X16 || arm64asm.Reg(r) == arm64asm.X17
		}
	}
	return false
}

// decodeARM64 decodes fn's fixed-width instructions and calls visit for each
// one. Undecodable words are skipped; it is an error only when nothing
// decodes.
func (b *Binary) decodeARM64(fn Func, code []byte, visit func(addr uint64, inst arm64asm.Inst)) error {
	decoded := 0
	var firstErr error
	for pc := 0; pc+4 <= len(code); pc += 4 {
		inst, err := arm64asm.Decode(code[pc : pc+4])
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("at %#x (%#08x): %w", fn.Entry+uint64(pc), binary.LittleEndian.Uint32(code[pc:]), err)
			}
			continue
		}
		decoded++
		visit(fn.Entry+uint64(pc), inst)
	}
	if decoded == 0 {
		return fmt.Errorf("decode %s in %s: no instruction decoded: %w", fn.Name, b.Path, firstErr)
	}
	return nil
}

// returnsARM64 lists fn's RET instructions.
func (b *Binary) returnsARM64(fn Func, code []byte) ([]uint64, error) {
	var rets []uint64
	err := b.decodeARM64(fn, code, func(addr uint64, inst arm64asm.Inst) {
		if inst.Op == arm64asm.RET {
			rets = append(rets, addr)
		}
	})
	return rets, err
}

// callsARM64 lists fn's BL instructions.
func (b *Binary) callsARM64(fn Func, code []byte) ([]Call, error) {
	var calls []Call
	err := b.decodeARM64(fn, code, func(addr uint64, inst arm64asm.Inst) {
		if inst.Op != arm64asm.BL {
			return
		}
		if rel, ok := inst.Args[0].(arm64asm.PCRel); ok {
			calls = append(calls, Call{Addr: addr, Target: addr + uint64(int64(rel))})
		}
	})
	return calls, err
}
