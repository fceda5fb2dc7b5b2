package uprobe_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestChanProbesPlanned: a binary's plan probes runtime.chansend and
// runtime.chanrecv, each once, and gives the probes the hchan and sudog
// offsets its own DWARF has (the element pointer's source of truth,
// sudog.elem.vu, where elem is a maybeTraceablePtr), and chanrecv's text,
// which a parked receiver's frames are found from.
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
	for _, pt := range plan.Points {
		if pt.Program == uprobe.ChanSend || pt.Program == uprobe.ChanRecv {
			probed[pt.Program.String()+" "+pt.Func]++
		}
	}
	if probed["chan_send runtime.chansend"] != 1 || probed["chan_recv runtime.chanrecv"] != 1 || len(probed) != 2 {
		t.Errorf("channel probes %v, want chan_send on runtime.chansend and chan_recv on runtime.chanrecv; notes %q", probed, plan.Notes)
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
	for _, n := range plan.Notes {
		if strings.Contains(n, "hand-offs not watched") {
			t.Errorf("note %q", n)
		}
	}
}
