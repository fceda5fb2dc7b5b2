package uprobe_test

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestChanProbesPlanned: a binary's plan probes runtime.chansend and
// runtime.chanrecv, each once, and gives the probes the hchan, sudog and
// g.selectDone offsets its own DWARF has (the element pointer's source of
// truth, sudog.elem.vu, where elem is a maybeTraceablePtr), and the texts
// of chanrecv and selectgo, which a parked receiver's frames are found
// from. examples/worker has no multi-case select: no select probe.
// integration/testdata/handoff has several: each select of package main is
// probed on its CALL of runtime.selectgo and on the jump that tests
// selectgo's results (emulated), just after the call; selectgo itself is
// not probed.
func TestChanProbesPlanned(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "./examples/worker", "./integration/testdata/handoff")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the targets: %v\n%s", err, out)
	}
	t.Run("worker", func(t *testing.T) { checkChanPlan(t, filepath.Join(dir, "worker"), false) })
	t.Run("handoff", func(t *testing.T) { checkChanPlan(t, filepath.Join(dir, "handoff"), true) })
}

// TestChanProbesPlannedARM64: in an arm64 binary each BL of
// runtime.selectgo in package main (found by the arm64 disassembler) gets
// select_enter on the BL and select_result, single-stepped, on the return
// address, where the results are in R0 and R1; a receiver parked in a
// select is handed its element (selectgo's text and g.selectDone known).
func TestChanProbesPlannedARM64(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "handoff")
	build := exec.Command("go", "build", "-o", exe, "./integration/testdata/handoff")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "GOARCH=arm64", "GOOS=linux", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the target: %v\n%s", err, out)
	}
	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, c := range selectgoCalls(t, bin) {
		want[fmt.Sprintf("select_enter %s %#x", c.fn, c.addr)] = true
		want[fmt.Sprintf("select_result %s %#x stepped", c.fn, c.addr+4)] = true
	}
	if len(want) == 0 {
		t.Fatal("no call of runtime.selectgo in package main: the target has no multi-case select")
	}
	got := map[string]bool{}
	for _, pt := range plan.Points {
		switch pt.Program {
		case uprobe.SelectEnter:
			got[fmt.Sprintf("select_enter %s %#x", pt.Func, pt.Address)] = !pt.Stepped
		case uprobe.SelectResult:
			got[fmt.Sprintf("select_result %s %#x stepped", pt.Func, pt.Address)] = pt.Stepped && pt.CountedApart
		}
	}
	for w := range want {
		if ok, placed := got[w]; !placed {
			t.Errorf("want %s: not in the plan", w)
		} else if !ok {
			t.Errorf("%s: wrong stepping (select_enter is simulated, select_result single-stepped and counted apart)", w)
		}
	}
	for g := range got {
		if !want[g] {
			t.Errorf("%s in the plan: not a BL of runtime.selectgo in package main, or not its return address", g)
		}
	}
	noted := false
	for _, n := range plan.Notes {
		noted = noted || strings.Contains(n, fmt.Sprintf("%d multi-case selects in user code probed at the return of runtime.selectgo: single-stepped (arm64)", len(want)/2))
	}
	if !noted {
		t.Errorf("no note says the selects' result probes are single-stepped: %q", plan.Notes)
	}
	l := plan.Layout
	if l.ChanBuf == 0 || l.SelectText == 0 || l.SelectTextEnd <= l.SelectText || l.GSelectDone == 0 {
		t.Errorf("layout %+v: want channels, selectgo's text and g.selectDone known", l)
	}
}

func checkChanPlan(t *testing.T, path string, selects bool) {
	bin, err := target.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The selects of package main, by decoding every call of it.
	calls := selectgoCalls(t, bin)
	var want []string
	for _, c := range calls {
		want = append(want, fmt.Sprintf("%s after %#x", c.fn, c.addr))
	}
	if selects != (len(want) > 0) {
		t.Fatalf("%d selects in package main", len(want))
	}
	probed := map[string]int{}
	var got []string
	for _, pt := range plan.Points {
		switch pt.Program {
		case uprobe.ChanSend, uprobe.ChanRecv:
			probed[pt.Program.String()+" "+pt.Func]++
		case uprobe.SelectEnter:
			probed["select_enter"]++
			found := false
			for _, c := range calls {
				found = found || c.fn == pt.Func && c.addr == pt.Address
			}
			if !found || pt.Stepped {
				t.Errorf("select_enter at %#x in %s (stepped %v): not a CALL of runtime.selectgo", pt.Address, pt.Func, pt.Stepped)
			}
		case uprobe.SelectResult:
			if pt.Stepped || pt.CountedApart {
				t.Errorf("select_result at %#x in %s: stepped %v, counted apart %v; want a jump", pt.Address, pt.Func, pt.Stepped, pt.CountedApart)
			}
			// The CALL before it (5 bytes), then at most a NOP and a
			// compare.
			for _, c := range calls {
				if c.fn == pt.Func && pt.Address >= c.addr+5 && pt.Address <= c.addr+5+16 {
					got = append(got, fmt.Sprintf("%s after %#x", c.fn, c.addr))
				}
			}
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	wantProbed := map[string]int{"chan_send runtime.chansend": 1, "chan_recv runtime.chanrecv": 1}
	if selects {
		wantProbed["select_enter"] = len(calls)
	}
	if !maps.Equal(probed, wantProbed) || !slices.Equal(got, want) {
		t.Errorf("channel probes %v, select results %q; want %v and %q; notes %q", probed, got, wantProbed, want, plan.Notes)
	}
	l := plan.Layout
	elem := "elem"
	if _, err := bin.FieldOffset("runtime.sudog", "elem.vu"); err == nil {
		elem = "elem.vu"
	}
	for _, f := range []struct {
		got       uint64
		typ, path string
	}{
		{l.ChanQcount, "runtime.hchan", "qcount"}, {l.ChanDataqsiz, "runtime.hchan", "dataqsiz"},
		{l.ChanBuf, "runtime.hchan", "buf"}, {l.ChanElemsize, "runtime.hchan", "elemsize"},
		{l.ChanClosed, "runtime.hchan", "closed"}, {l.ChanSendx, "runtime.hchan", "sendx"},
		{l.ChanRecvx, "runtime.hchan", "recvx"}, {l.ChanRecvq, "runtime.hchan", "recvq.first"},
		{l.ChanSendq, "runtime.hchan", "sendq.first"}, {l.SudogG, "runtime.sudog", "g"},
		{l.SudogElem, "runtime.sudog", elem}, {l.SudogIsSelect, "runtime.sudog", "isSelect"},
		{l.GSelectDone, "runtime.g", "selectDone"},
	} {
		want, err := bin.FieldOffset(f.typ, f.path)
		if err != nil {
			t.Fatalf("DWARF: %v", err)
		}
		if f.got != want {
			t.Errorf("%s.%s: plan %d, DWARF %d (Go %s)", f.typ, f.path, f.got, want, bin.GoVersion)
		}
	}
	fn, err := bin.Func("runtime.chanrecv")
	if err != nil || l.ChanRecvText != fn.Entry || l.ChanRecvTextEnd != fn.End || fn.End <= fn.Entry {
		t.Errorf("chanrecv's text [%#x, %#x), want %+v (%v)", l.ChanRecvText, l.ChanRecvTextEnd, fn, err)
	}
	selectgo, err := bin.Func("runtime.selectgo")
	if err != nil || l.SelectText != selectgo.Entry || l.SelectTextEnd != selectgo.End || selectgo.End <= selectgo.Entry {
		t.Errorf("selectgo's text [%#x, %#x), want %+v", l.SelectText, l.SelectTextEnd, selectgo)
	}
	for _, n := range plan.Notes {
		if strings.Contains(n, "not watched") && strings.Contains(n, "select") || strings.Contains(n, "hand-offs not watched") {
			t.Errorf("note %q", n)
		}
	}
}

// selectCall is a call of runtime.selectgo: its function, its address.
type selectCall struct {
	fn   string
	addr uint64
}

// selectgoCalls lists the calls of runtime.selectgo in package main, found
// by target's disassembly of each of its functions (Binary.Calls).
func selectgoCalls(t *testing.T, bin *target.Binary) []selectCall {
	t.Helper()
	selectgo, err := bin.Func("runtime.selectgo")
	if err != nil {
		t.Fatal(err)
	}
	var calls []selectCall
	for _, fn := range bin.Funcs() {
		if !strings.HasPrefix(fn.Name, "main.") {
			continue
		}
		cs, err := bin.Calls(fn)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Target == selectgo.Entry {
				calls = append(calls, selectCall{fn.Name, c.Addr})
			}
		}
	}
	return calls
}
