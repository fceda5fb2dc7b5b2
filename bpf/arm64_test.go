package bpf

import (
	"maps"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestARM64Objects: the arm64 objects (built, not run here: this host is
// amd64) hold the same programs and maps as the amd64 ones, and the arm64
// ctxwatch programs read the arm64 uprobe context, struct user_pt_regs.
func TestARM64Objects(t *testing.T) {
	for _, stem := range []string{"ctxwatch", "follow", "empty"} {
		x86, err := ebpf.LoadCollectionSpec(stem + "_x86_bpfel.o")
		if err != nil {
			t.Fatal(err)
		}
		arm, err := ebpf.LoadCollectionSpec(stem + "_arm64_bpfel.o")
		if err != nil {
			t.Fatal(err)
		}
		for what, names := range map[string][2][]string{
			"programs": {slices.Sorted(maps.Keys(x86.Programs)), slices.Sorted(maps.Keys(arm.Programs))},
			"maps":     {slices.Sorted(maps.Keys(x86.Maps)), slices.Sorted(maps.Keys(arm.Maps))},
		} {
			if !slices.Equal(names[0], names[1]) {
				t.Errorf("%s: amd64 %s %v, arm64 %v", stem, what, names[0], names[1])
			}
		}
		if stem != "ctxwatch" {
			continue
		}
		if arm.Types == nil {
			t.Fatal("arm64 object has no BTF")
		}
		var regs *btf.Struct
		if err := arm.Types.TypeByName("user_pt_regs", &regs); err != nil {
			t.Errorf("arm64 object: %v", err)
		} else if regs.Size != 34*8 {
			t.Errorf("user_pt_regs is %d bytes, want 272 (regs[31], sp, pc, pstate)", regs.Size)
		}
		var x86regs *btf.Struct
		if err := x86.Types.TypeByName("pt_regs", &x86regs); err != nil {
			t.Errorf("amd64 object: %v", err)
		}
	}
}
