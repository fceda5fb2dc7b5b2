package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestNoFallthroughBackEdges applies the control-flow check of Linux 5.10's
// verifier (check_cfg) to every program: a loop's back-edge must be a jump.
// 5.10 refuses a loop entered from its middle, where the edge that closes
// the loop is an ordinary instruction falling through ("back-edge from insn
// X to X+1"); later kernels accept it, so only a 5.10 VM would notice.
func TestNoFallthroughBackEdges(t *testing.T) {
	for _, obj := range []string{"ctxwatch_x86_bpfel.o", "ctxwatch_arm64_bpfel.o", "follow_x86_bpfel.o", "follow_arm64_bpfel.o"} {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatal(err)
		}
		for name, prog := range spec.Programs {
			raw := marshal(t, prog.Instructions)
			if err := checkCFG510(raw); err != nil {
				t.Errorf("%s: program %s: %v", obj, name, err)
			}
		}
	}
}

// marshal returns the program with its subprograms, as the kernel gets it.
func marshal(t *testing.T, insns asm.Instructions) []asm.Instruction {
	t.Helper()
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, binary.LittleEndian); err != nil {
		t.Fatalf("marshal: %v", err)
	}
	// One slot per 8 bytes; the second half of a 16-byte load is a
	// placeholder no edge can reach.
	var out []asm.Instruction
	r := bytes.NewReader(buf.Bytes())
	for r.Len() > 0 {
		var ins asm.Instruction
		if err := ins.Unmarshal(r, binary.LittleEndian, "linux"); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		out = append(out, ins)
		if ins.OpCode.IsDWordLoad() {
			out = append(out, asm.Instruction{OpCode: asm.InvalidOpCode})
		}
	}
	return out
}

// checkCFG510 is 5.10's check_cfg depth-first search: an edge to an
// instruction still on the search stack is a loop, allowed only when the
// edge is a jump (conditional or not), never a fall-through of an ordinary
// instruction or of a call.
func checkCFG510(insns []asm.Instruction) error {
	const (
		discovered = 1
		explored   = 2
	)
	state := make([]int, len(insns))
	next := make([]int, len(insns)) // edges of insn tried so far
	stack := []int{0}
	state[0] = discovered
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		ins := insns[t]
		type edge struct {
			to     int
			loopOK bool
		}
		var edges []edge
		op := ins.OpCode
		switch {
		case op.JumpOp() == asm.Exit:
		case op.JumpOp() == asm.Call:
			edges = append(edges, edge{t + 1, false})
			if ins.IsFunctionCall() {
				edges = append(edges, edge{t + int(ins.Constant) + 1, false})
			}
		case op.JumpOp() == asm.Ja && op.Class().IsJump():
			off := int(ins.Offset)
			if op.Class() == asm.Jump32Class {
				off = int(ins.Constant)
			}
			edges = append(edges, edge{t + off + 1, true})
		case op.Class().IsJump():
			edges = append(edges, edge{t + 1, true}, edge{t + int(ins.Offset) + 1, true})
		default:
			w := t + 1
			if op.IsDWordLoad() {
				w = t + 2
			}
			edges = append(edges, edge{w, false})
		}
		pushed := false
		for next[t] < len(edges) {
			e := edges[next[t]]
			next[t]++
			if e.to < 0 || e.to >= len(insns) {
				continue // the verifier refuses these itself
			}
			switch state[e.to] {
			case 0:
				state[e.to] = discovered
				stack = append(stack, e.to)
				pushed = true
			case discovered:
				if !e.loopOK {
					return fmt.Errorf("back-edge from insn %d to %d: 5.10 refuses a loop closed by a fall-through", t, e.to)
				}
			}
			if pushed {
				break
			}
		}
		if !pushed {
			state[t] = explored
			stack = stack[:len(stack)-1]
		}
	}
	return nil
}
