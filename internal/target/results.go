package target

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/arch/x86/x86asm"
)

// maxResultScan is how many instructions after a CALL ResultSites decodes
// looking for the jump that tests the callee's results.
const maxResultScan = 8

// ResultSite is a direct call of a function, seen from its caller: where
// a probe sees the callee's results in their registers.
type ResultSite struct {
	Func Func   // the caller
	Call uint64 // the CALL instruction
	// Probe is, on amd64, the first conditional or direct jump after the
	// call with nothing before it that may write the result registers
	// (RAX, RBX), R14 or RSP: x86 uprobes emulate a jump, where they
	// single-step most other instructions. Without such a jump, and on
	// arm64 always, Probe is the return address itself (the results in
	// R0 and R1) and Emulated is false.
	Probe    uint64
	Emulated bool
}

// ResultSites lists the direct calls of callee made by the functions whose
// name satisfies keep, with where to probe each call's results (see
// ResultSite). On amd64, candidates are found by their bytes (E8 and a
// displacement to callee's entry) and kept only where a linear decode of
// the caller starts an instruction there, which also cuts each result scan
// at the caller's end. On arm64 every instruction is a word: a BL whose
// offset reaches callee's entry is a site. keep gets each name as a view
// of the pclntab, as for TextRanges.
func (b *Binary) ResultSites(callee Func, keep func(funcName string) bool) ([]ResultSite, error) {
	var decode func(fn Func, code []byte, target uint64) []ResultSite
	switch b.Arch {
	case "amd64":
		decode = func(fn Func, code []byte, target uint64) []ResultSite {
			if !callsTo(code, fn.Entry, target) {
				return nil
			}
			return resultSites(fn, code, target)
		}
	case "arm64":
		decode = resultSitesARM64
	default:
		return nil, fmt.Errorf("calls of %s on %s: %w", callee.Name, b.Arch, ErrNotDecoded)
	}
	var sites []ResultSite
	for _, f := range b.funcs {
		name := b.table.NameBytes(f)
		if len(name) == 0 || !keep(unsafe.String(&name[0], len(name))) || f.End <= f.Entry {
			continue
		}
		code, err := b.readCode(f.Entry, f.End-f.Entry)
		if err != nil {
			continue // a function that cannot be read has no site to probe
		}
		fn := Func{Name: unsafe.String(&name[0], len(name)), Entry: f.Entry, End: f.End}
		if found := decode(fn, code, callee.Entry); len(found) > 0 {
			fn.Name = string(name) // kept: a copy, not a view of the pclntab
			for i := range found {
				found[i].Func = fn
			}
			sites = append(sites, found...)
		}
	}
	return sites, nil
}

// callsTo reports whether code, at address base, holds the bytes of a
// CALL rel32 to target anywhere (not necessarily at an instruction).
func callsTo(code []byte, base, target uint64) bool {
	for i := 0; i+5 <= len(code); i++ {
		if code[i] == 0xe8 && base+uint64(i)+5+uint64(int64(int32(binary.LittleEndian.Uint32(code[i+1:])))) == target {
			return true
		}
	}
	return false
}

// resultSites decodes fn (its code) from its entry and returns a site for
// each CALL of target.
func resultSites(fn Func, code []byte, target uint64) []ResultSite {
	var sites []ResultSite
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return sites // boundaries after an undecodable byte are not known
		}
		next := pc + inst.Len
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL &&
			fn.Entry+uint64(next)+uint64(int64(rel)) == target {
			s := ResultSite{Func: fn, Call: fn.Entry + uint64(pc), Probe: fn.Entry + uint64(next)}
			at := next
			for n := 0; n < maxResultScan && at < len(code); n++ {
				in, err := x86asm.Decode(code[at:], 64)
				if err != nil {
					break
				}
				if isJump(in) {
					s.Probe, s.Emulated = fn.Entry+uint64(at), true
					break
				}
				if !resultSafe(in) {
					break
				}
				at += in.Len
			}
			sites = append(sites, s)
		}
		pc = next
	}
	return sites
}

// resultSitesARM64 returns a site for each BL of target in fn's code (at
// fn.Entry): BL is 100101 and a signed 26-bit word offset. Every word is
// looked at: a literal pool in the text (Go's assembler flushes them after
// unconditional branches) would have to hold this very word, a BL to
// target from its own place, to be taken for a call, and then only puts
// probes where no instruction runs. The kernel simulates the BL; the probe
// on the return address is single-stepped out of line, or simulated for a
// branch.
func resultSitesARM64(fn Func, code []byte, target uint64) []ResultSite {
	var sites []ResultSite
	for pc := 0; pc+4 <= len(code); pc += 4 {
		w := binary.LittleEndian.Uint32(code[pc:])
		if w&0xfc000000 != 0x94000000 {
			continue
		}
		off := int64(int32(w<<6) >> 4) // imm26 * 4, sign-extended
		if fn.Entry+uint64(pc)+uint64(off) == target {
			at := fn.Entry + uint64(pc)
			sites = append(sites, ResultSite{Func: fn, Call: at, Probe: at + 4})
		}
	}
	return sites
}

// isJump reports whether inst is a conditional jump or a direct JMP.
func isJump(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO,
		x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP:
		return true
	case x86asm.JMP:
		_, ok := inst.Args[0].(x86asm.Rel)
		return ok
	}
	return false
}

// resultSafe reports whether inst, between a CALL and the jump a probe
// goes on, leaves the result registers, R14 and RSP as the call left
// them and falls through: a compare, a NOP, a store, or a move into a
// register that is none of those (nor an argument register: see
// protectedReg).
func resultSafe(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.CMP, x86asm.TEST, x86asm.NOP:
		return true
	case x86asm.MOV, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD, x86asm.LEA:
		switch dst := inst.Args[0].(type) {
		case x86asm.Mem:
			return inst.Op == x86asm.MOV
		case x86asm.Reg:
			return !protectedReg(dst)
		}
	}
	return false
}
