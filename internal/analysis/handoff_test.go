package analysis_test

import (
	"reflect"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
)

// Return addresses of channel sends in the recorded target.
const (
	retSendJob = 0x6000 // main.handle's send on jobs (line 45)
	retSendID  = 0x6100 // main.handle's send on ids (line 46)
	retWorkerA = 0x6200 // the SDK's Start called by main.worker (line 80)
)

var (
	fSendJob = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 45}
	fSendID  = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 46}
	fWorkerA = analysis.Frame{Function: "main.worker", File: "/src/app/worker.go", Line: 80}
)

func handoffResolver() fakeResolver {
	r := resolver()
	r[retSendJob] = []analysis.Frame{fSendJob}
	r[retSendID] = []analysis.Frame{fSendID}
	r[retWorkerA] = []analysis.Frame{fOtelStart, fWorkerA} // the SDK's Start, as the probes see it
	return r
}

// handoff is the record of goroutine g receiving an element that sender
// sent inside traceA, from the send's stack.
func handoff(t uint64, g, sender uint64, send ...uint64) *event.Event {
	e := withStack(event.Event{Time: t, Kind: event.Handoff, Goroutine: g, Parent: sender, PID: pid, Trace: traceA}, send...)
	e.PC = send[0]
	return e
}

func sendSite(t *testing.T, s analysis.Snapshot, f analysis.Frame) analysis.HandoffSite {
	t.Helper()
	for _, hs := range s.HandoffSites {
		if hs.Site == f {
			return hs
		}
	}
	t.Fatalf("no send site %v in %+v", f, s.HandoffSites)
	return analysis.HandoffSite{}
}

// TestLostAtHandoff: a worker handed a job is judged at its next
// trace-bearing act, as a spawned child: with the trace, kept for the send
// site; a new root, lost-at-handoff at the worker's line with the send's
// stack and the new trace; with another trace (another request's job), not
// judged. No spawn site is made of a send.
func TestLostAtHandoff(t *testing.T) {
	a := analysis.New(pid, analysis.Options{Resolver: handoffResolver(), IsUser: isUser})
	// The job carries the request's context.
	mustNoBreak(t, a, handoff(100, 20, 1, retSendJob, retServe))
	mustNoBreak(t, a, firstCheck(110, 20, event.Propagated, retWorkerA))
	// Only an id: the worker starts a new root, twice.
	for i := range uint64(2) {
		mustNoBreak(t, a, handoff(200+i*100, 20, 1, retSendID, retServe))
		nr := firstCheck(250+i*100, 20, event.NewRoot, retWorkerA)
		nr.Other = traceB
		nr.SpawnTime = 200 + i*100
		b := mustBreak(t, a, nr)
		if b.Kind != analysis.LostAtHandoff || b.Site != fWorkerA || b.ParentGoroutine != 1 || b.Spawn != nil ||
			b.Other != traceB || b.After() != 50 || b.Count != i+1 || b.First != (i == 0) {
			t.Errorf("break %+v, want lost-at-handoff at %v from g1, the new trace, 50 ns after the receive", b, fWorkerA)
		}
		if !reflect.DeepEqual(b.Handoff, []analysis.Frame{fSendID, fServe}) {
			t.Errorf("handoff stack %v", b.Handoff)
		}
	}
	// A context without any trace.
	mustNoBreak(t, a, handoff(500, 21, 1, retSendID, retServe))
	if b := mustBreak(t, a, firstCheck(510, 21, event.Lost, retWorkerA)); b.Kind != analysis.LostAtHandoff {
		t.Errorf("break %+v, want lost-at-handoff", b)
	}
	// Another request's job: not judged.
	mustNoBreak(t, a, handoff(600, 22, 1, retSendJob, retServe))
	mustNoBreak(t, a, firstCheck(610, 22, event.Other, retWorkerA))
	// A job received, then another before any act: the first is never judged.
	mustNoBreak(t, a, handoff(700, 23, 1, retSendJob, retServe))
	mustNoBreak(t, a, handoff(710, 23, 1, retSendJob, retServe))
	mustNoBreak(t, a, firstCheck(720, 23, event.Propagated, retWorkerA))

	s := a.Snapshot()
	if len(s.SpawnSites) != 0 {
		t.Errorf("spawn sites %+v, want none: nothing was spawned", s.SpawnSites)
	}
	if got, want := sendSite(t, s, fSendJob), (analysis.HandoffSite{Site: fSendJob, Handed: 4, Propagated: 2, NeverJudged: 2}); got != want {
		t.Errorf("send site %+v, want %+v", got, want)
	}
	if got, want := sendSite(t, s, fSendID), (analysis.HandoffSite{Site: fSendID, Handed: 3, Lost: 1, NewRoot: 2}); got != want {
		t.Errorf("send site %+v, want %+v", got, want)
	}
	if s.HandoffSites[0].Site != fSendID {
		t.Errorf("send sites %+v: the one with breaks is not first", s.HandoffSites)
	}
	if hs := sendSite(t, s, fSendJob); hs.Retention() != 1 {
		t.Errorf("retention %v, want 1", hs.Retention())
	}
	if len(s.Breaks) != 1 || s.Breaks[0].Count != 3 || s.Breaks[0].Kind != analysis.LostAtHandoff ||
		!reflect.DeepEqual(s.Breaks[0].Handoff, []analysis.Frame{fSendID, fServe}) || s.Breaks[0].Spawn != nil {
		t.Errorf("breaks %+v, want one lost-at-handoff counted 3 times with the send's stack", s.Breaks)
	}
}

// TestHandoffJudgedLikeSpawn: the rest of a spawned child's rules hold for
// a handed-off goroutine: a traceless incidental check waits for the work
// (lost at the end if none comes), a log record is trace-bearing work
// (log-without-trace with the send's stack, lost for the send site), and a
// lazily started singleton handed a job is judged: the job is the
// request's work.
func TestHandoffJudgedLikeSpawn(t *testing.T) {
	const retOnce = 0x4000
	r := merged(logResolver(), handoffResolver())
	r[retOnce] = []analysis.Frame{{Function: "sync.(*Once).doSlow", File: "/go/src/sync/once.go", Line: 78}}
	a := analysis.New(pid, analysis.Options{Resolver: r, IsUser: isUser})

	mustNoBreak(t, a, handoff(100, 30, 1, retSendID, retServe))
	mustNoBreak(t, a, firstCheck(110, 30, event.Traceless, retSQLConn, retWorkerA))
	bs := a.Finish()
	if len(bs) != 1 || bs[0].Kind != analysis.LostAtHandoff || bs[0].Goroutine != 30 ||
		!reflect.DeepEqual(bs[0].Handoff, []analysis.Frame{fSendID, fServe}) {
		t.Errorf("Finish: %+v, want the traceless worker lost-at-handoff", bs)
	}

	mustNoBreak(t, a, handoff(200, 31, 1, retSendID, retServe))
	b := mustBreak(t, a, logRecord(210, 31, event.Lost, event.Trace{}, retSlogInfo, retHandleLog))
	if b.Kind != analysis.LogWithoutTrace || b.Spawn != nil || !reflect.DeepEqual(b.Handoff, []analysis.Frame{fSendID, fServe}) {
		t.Errorf("break %+v, want log-without-trace with the send's stack", b)
	}

	// A worker started under sync.Once, then handed a job.
	mustNoBreak(t, a, spawn(300, 32, 1, retGoWorker, retOnce, retServe))
	mustNoBreak(t, a, firstCheck(310, 32, event.Lost, retWorkerA)) // its own first act: not judged
	mustNoBreak(t, a, handoff(400, 32, 1, retSendID, retServe))
	if b := mustBreak(t, a, firstCheck(410, 32, event.Lost, retWorkerA)); b.Kind != analysis.LostAtHandoff {
		t.Errorf("lazy worker's job: %+v, want lost-at-handoff", b)
	}
	if got, want := sendSite(t, a.Snapshot(), fSendID), (analysis.HandoffSite{Site: fSendID, Handed: 3, Lost: 3}); got != want {
		t.Errorf("send site %+v, want %+v", got, want)
	}
}

func merged(rs ...fakeResolver) fakeResolver {
	out := fakeResolver{}
	for _, r := range rs {
		for k, v := range r {
			out[k] = v
		}
	}
	return out
}
