package uprobe_test

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestChanProbesPlanned: a binary's plan probes runtime.chansend and
// runtime.chanrecv, each once, and runtime.selectgo's entry and each of
// its RETs (single-stepped, counted apart), and gives the probes the hchan,
// sudog and g.selectDone offsets its own DWARF has (the element pointer's
// source of truth, sudog.elem.vu, where elem is a maybeTraceablePtr), and
// the texts of chanrecv and selectgo, which a parked receiver's frames are
// found from.
func TestChanProbesPlanned(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "./examples/worker")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the target: %v\n%s", err, out)
	}
	bin, err := target.Open(filepath.Join(dir, "worker"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	probed := map[string]int{}
	var rets []uint64
	for _, pt := range plan.Points {
		switch pt.Program {
		case uprobe.ChanSend, uprobe.ChanRecv, uprobe.SelectEnter:
			probed[pt.Program.String()+" "+pt.Func]++
		case uprobe.SelectReturn:
			probed[pt.Program.String()+" "+pt.Func]++
			rets = append(rets, pt.Address)
			if !pt.Stepped || !pt.CountedApart {
				t.Errorf("select_ret at %#x: stepped %v, counted apart %v; want both", pt.Address, pt.Stepped, pt.CountedApart)
			}
		}
	}
	selectgo, err := bin.Func("runtime.selectgo")
	if err != nil {
		t.Fatal(err)
	}
	wantRets, err := bin.Returns(selectgo)
	if err != nil || len(wantRets) == 0 {
		t.Fatalf("RETs of runtime.selectgo: %v, %v", wantRets, err)
	}
	if probed["chan_send runtime.chansend"] != 1 || probed["chan_recv runtime.chanrecv"] != 1 ||
		probed["select_enter runtime.selectgo"] != 1 || len(probed) != 4 || !slices.Equal(rets, wantRets) {
		t.Errorf("channel probes %v at RETs %#x, want chan_send on runtime.chansend, chan_recv on runtime.chanrecv, select_enter on runtime.selectgo and select_ret on its RETs %#x; notes %q",
			probed, rets, wantRets, plan.Notes)
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
	if l.SelectText != selectgo.Entry || l.SelectTextEnd != selectgo.End {
		t.Errorf("selectgo's text [%#x, %#x), want %+v", l.SelectText, l.SelectTextEnd, selectgo)
	}
	for _, n := range plan.Notes {
		if strings.Contains(n, "not watched") && strings.Contains(n, "select") || strings.Contains(n, "hand-offs not watched") {
			t.Errorf("note %q", n)
		}
	}
}
