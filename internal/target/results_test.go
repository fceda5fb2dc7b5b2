package target

import (
	"encoding/binary"
	"testing"
)

// TestResultSites: the probe of a call's results goes on the first jump
// after the call when only compares, NOPs, stores and moves into other
// registers come between (what Go compiles after a select's call of
// runtime.selectgo), else on the return address; a call of another
// function is no site.
func TestResultSites(t *testing.T) {
	const entry, callee = 0x1000, 0x9000
	call := func(at int, target uint64) []byte {
		b := []byte{0xe8, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[1:], uint32(int32(int64(target)-int64(entry+at+5))))
		return b
	}
	var (
		testAX   = []byte{0x48, 0x85, 0xc0}             // TESTQ AX, AX
		jne      = []byte{0x75, 0x02}                   // JNE +2
		je       = []byte{0x74, 0x02}                   // JE +2
		nopl     = []byte{0x0f, 0x1f, 0x44, 0x00, 0x00} // NOPL 0(AX)(AX*1)
		movAXCX  = []byte{0x48, 0x89, 0xc1}             // MOVQ AX, CX: an argument register
		movAXR12 = []byte{0x49, 0x89, 0xc4}             // MOVQ AX, R12
		spill    = []byte{0x48, 0x89, 0x44, 0x24, 0x30} // MOVQ AX, 0x30(SP)
		cmp1     = []byte{0x48, 0x83, 0xf8, 0x01}       // CMPQ AX, $1
		ret      = []byte{0xc3}
	)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		code     []byte
		probe    uint64 // offset from entry; 0: no site
		emulated bool
	}{
		{"test and jump", cat(call(0, callee), testAX, jne, ret, ret, ret), 8, true},
		{"nop first", cat(call(0, callee), nopl, testAX, je, ret, ret, ret), 13, true},
		{"spill, compare", cat(call(0, callee), spill, movAXR12, cmp1, je, ret, ret, ret), 17, true},
		{"result moved to an argument register", cat(call(0, callee), movAXCX, testAX, jne, ret, ret, ret), 5, false},
		{"no jump", cat(call(0, callee), ret), 5, false},
		{"another callee", cat(call(0, callee+16), testAX, jne, ret, ret, ret), 0, false},
		{"after other code", cat(testAX, call(3, callee), testAX, jne, ret, ret, ret), 11, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := Func{Name: "main.f", Entry: entry, End: entry + uint64(len(tc.code))}
			if got, want := callsTo(tc.code, entry, callee), tc.probe != 0; got != want {
				t.Errorf("callsTo = %v, want %v", got, want)
			}
			sites := resultSites(fn, tc.code, callee)
			if tc.probe == 0 {
				if len(sites) != 0 {
					t.Errorf("sites %+v, want none", sites)
				}
				return
			}
			if len(sites) != 1 || sites[0].Probe != entry+tc.probe || sites[0].Emulated != tc.emulated || sites[0].Func != fn {
				t.Errorf("sites %+v, want one probe at %#x, emulated %v", sites, entry+tc.probe, tc.emulated)
			}
		})
	}
}
