package export

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// recorder keeps what it is given, across Shutdown.
type recorder struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
	fail  bool
}

func (r *recorder) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("collector down")
	}
	r.spans = append(r.spans, s...)
	return nil
}
func (r *recorder) Shutdown(context.Context) error { return nil }

type sinkRecorder struct{ sums []findings.Summary }

func (s *sinkRecorder) Break(findings.Process, analysis.Break) error { return nil }
func (s *sinkRecorder) Summary(sum findings.Summary) error {
	s.sums = append(s.sums, sum)
	return nil
}

func newTest(t *testing.T, rate float64, rec *recorder) (*Exporter, *sinkRecorder) {
	t.Helper()
	next := &sinkRecorder{}
	e, err := newExporter(Config{Rate: rate}, next, func(context.Context) (sdktrace.SpanExporter, error) { return rec, nil })
	if err != nil {
		t.Fatal(err)
	}
	return e, next
}

func otelTrace(t *testing.T, traceHex, spanHex string) event.Trace {
	t.Helper()
	var tr event.Trace
	id, err := hex.DecodeString(traceHex)
	if err != nil {
		t.Fatal(err)
	}
	copy(tr.ID[:], id)
	tr.Len = uint8(len(id))
	sp, err := hex.DecodeString(spanHex)
	if err != nil {
		t.Fatal(err)
	}
	copy(tr.Span[:], sp)
	return tr
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, a := range s.Attributes() {
		m[a.Key] = a.Value
	}
	return m
}

func TestNewRootSpan(t *testing.T) {
	rec := &recorder{}
	e, next := newTest(t, 0, rec)
	// As ctxwatch node describes a process: with its container, pod and node.
	proc := findings.Process{PID: 42, Executable: "svc", ServiceName: "checkout", GoVersion: "go1.26.8",
		ContainerID: "3f1c2a9d8b7e", PodUID: "6b2e1f0c-9a8d-4e7f-b6a5-c4d3e2f1a0b9", NodeName: "node-7"}
	now := time.Now()
	var ts unixTS
	mono := ts.now(t)
	b := analysis.Break{
		Kind:            analysis.NewRoot,
		PID:             42,
		Trace:           otelTrace(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
		Other:           otelTrace(t, "a5509ef7ed7a7d905026e01f1722f3fd", "1111111111111111"),
		Goroutine:       812,
		ParentGoroutine: 57,
		Site:            analysis.Frame{Function: "main.notify", File: "/src/app/main.go", Line: 55},
		Spawn:           []analysis.Frame{{Function: "main.handler.func1", File: "/src/app/main.go", Line: 38}, {Function: "net/http.HandlerFunc.ServeHTTP", File: "net/http/server.go", Line: 2322}},
		SpawnTime:       mono - 3_000_000,
		Time:            mono,
		Count:           1,
	}
	if err := e.Break(proc, b); err != nil {
		t.Fatal(err)
	}
	if err := e.Summary(findings.Summary{Process: proc}); err != nil {
		t.Fatal(err)
	}
	if len(rec.spans) != 1 {
		t.Fatalf("exported %d spans, want 1", len(rec.spans))
	}
	s := rec.spans[0]
	if s.Name() != "trace break: new-root" {
		t.Errorf("name %q", s.Name())
	}
	if got := s.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %s, want the trace that broke", got)
	}
	if got := s.Parent().SpanID().String(); got != "00f067aa0ba902b7" {
		t.Errorf("parent %s, want the span current where the trace was last seen", got)
	}
	if d := s.EndTime().Sub(s.StartTime()); d != 3*time.Millisecond {
		t.Errorf("duration %v, want spawn to break = 3ms", d)
	}
	if d := s.EndTime().Sub(now); d < -time.Second || d > time.Second {
		t.Errorf("end %v is %v from the wall clock at the break", s.EndTime(), d)
	}
	a := attrs(s)
	for k, want := range map[attribute.Key]attribute.Value{
		"ctxwatch.break.kind":         attribute.StringValue("new-root"),
		semconv.CodeFunctionNameKey:   attribute.StringValue("main.notify"),
		semconv.CodeFilePathKey:       attribute.StringValue("/src/app/main.go"),
		semconv.CodeLineNumberKey:     attribute.IntValue(55),
		"ctxwatch.spawn.function":     attribute.StringValue("main.handler.func1"),
		"ctxwatch.spawn.line":         attribute.IntValue(38),
		"ctxwatch.goroutine.id":       attribute.Int64Value(812),
		"ctxwatch.spawn.goroutine.id": attribute.Int64Value(57),
		"ctxwatch.break.suppressed":   attribute.Int64Value(0),
	} {
		if a[k] != want {
			t.Errorf("%s = %v, want %v", k, a[k].Emit(), want.Emit())
		}
	}
	if st := a["ctxwatch.spawn.stack"].AsStringSlice(); len(st) != 2 {
		t.Errorf("spawn stack %v, want 2 frames", st)
	}
	if l := s.Links(); len(l) != 1 || l[0].SpanContext.TraceID().String() != "a5509ef7ed7a7d905026e01f1722f3fd" ||
		l[0].SpanContext.SpanID().String() != "1111111111111111" {
		t.Errorf("links %+v, want one to the new trace's root span", l)
	}
	res := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Resource().Attributes() {
		res[kv.Key] = kv.Value
	}
	for k, want := range map[attribute.Key]attribute.Value{
		semconv.ServiceNameKey:           attribute.StringValue("checkout"),
		semconv.ProcessPIDKey:            attribute.IntValue(42),
		semconv.ProcessExecutableNameKey: attribute.StringValue("svc"),
		semconv.ProcessRuntimeVersionKey: attribute.StringValue("go1.26.8"),
		semconv.ContainerIDKey:           attribute.StringValue("3f1c2a9d8b7e"),
		semconv.K8SPodUIDKey:             attribute.StringValue("6b2e1f0c-9a8d-4e7f-b6a5-c4d3e2f1a0b9"),
		semconv.K8SNodeNameKey:           attribute.StringValue("node-7"),
	} {
		if res[k] != want {
			t.Errorf("resource %s = %v, want %v", k, res[k].Emit(), want.Emit())
		}
	}
	if _, ok := res[semconv.HostNameKey]; !ok {
		t.Error("resource has no host.name")
	}
	if st := next.sums[0].Export; st == nil || *st != (findings.ExportStats{Sent: 1}) {
		t.Errorf("summary export stats %+v, want 1 sent", st)
	}
}

// TestRateLimit: a burst over the rate becomes rate spans; the next span
// of the site carries the count of those left out.
func TestRateLimit(t *testing.T) {
	rec := &recorder{}
	e, next := newTest(t, 2, rec)
	proc := findings.Process{PID: 7, Executable: "svc"}
	b := analysis.Break{Kind: analysis.Dropped, PID: 7, Trace: otelTrace(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
		Site: analysis.Frame{Function: "main.h", File: "main.go", Line: 3}, Time: 1e12}
	for range 5 {
		if err := e.Break(proc, b); err != nil {
			t.Fatal(err)
		}
	}
	other := b
	other.Site.Line = 4 // another site has its own budget
	e.Break(proc, other)
	b.Time += 1e9 // a second later: two tokens back
	e.Break(proc, b)
	if err := e.Summary(findings.Summary{Process: proc}); err != nil {
		t.Fatal(err)
	}
	var suppressed []int64
	for _, s := range rec.spans {
		if attrs(s)[semconv.CodeLineNumberKey].AsInt64() == 3 {
			suppressed = append(suppressed, attrs(s)["ctxwatch.break.suppressed"].AsInt64())
		}
	}
	if len(rec.spans) != 4 || len(suppressed) != 3 || suppressed[2] != 3 {
		t.Errorf("%d spans, suppressed counts at site 3: %v; want 4 spans, [0 0 3]", len(rec.spans), suppressed)
	}
	if st := next.sums[0].Export; st == nil || *st != (findings.ExportStats{Sent: 4, Suppressed: 3}) {
		t.Errorf("summary export stats %+v, want 4 sent, 3 suppressed", st)
	}
}

// TestCustomKey: a W3C trace id under a custom key is the span's trace id,
// with no parent (custom keys have no spans).
func TestCustomKey(t *testing.T) {
	rec := &recorder{}
	e, _ := newTest(t, 0, rec)
	var tr event.Trace
	tr.Len = uint8(copy(tr.ID[:], "4bf92f3577b34da6a3ce929d0e0e4736"))
	tr.Key = 1
	proc := findings.Process{PID: 9, Executable: "svc"}
	e.Break(proc, analysis.Break{Kind: analysis.Dropped, PID: 9, Trace: tr, Site: analysis.Frame{Function: "main.h"}, Time: 1e12})
	e.Summary(findings.Summary{Process: proc})
	if len(rec.spans) != 1 {
		t.Fatalf("exported %d spans, want 1", len(rec.spans))
	}
	s := rec.spans[0]
	if got := s.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %s", got)
	}
	if s.Parent().IsValid() {
		t.Errorf("parent %v, want none", s.Parent())
	}
	if got := attrs(s)["ctxwatch.trace.value"].AsString(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("ctxwatch.trace.value %q", got)
	}
}

// TestDroppedCounted: spans a collector did not take are counted.
func TestDroppedCounted(t *testing.T) {
	rec := &recorder{fail: true}
	e, next := newTest(t, 0, rec)
	proc := findings.Process{PID: 7, Executable: "svc"}
	e.Break(proc, analysis.Break{Kind: analysis.Dropped, PID: 7, Trace: otelTrace(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"), Time: 1e12})
	e.Summary(findings.Summary{Process: proc})
	if st := next.sums[0].Export; st == nil || *st != (findings.ExportStats{Dropped: 1}) {
		t.Errorf("summary export stats %+v, want 1 dropped", st)
	}
}

func TestConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if (Config{Getenv: env(nil)}).OTLP() {
		t.Error("OTLP on with nothing set: ctxwatch must send nothing unasked")
	}
	for _, c := range []struct {
		cfg  Config
		want Protocol
	}{
		{Config{Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})}, HTTP},
		{Config{Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})}, GRPC},
		{Config{Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"})}, HTTP},
		{Config{Protocol: "grpc", Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})}, GRPC},
	} {
		if !c.cfg.OTLP() {
			t.Errorf("%+v: OTLP off", c.cfg)
		}
		if p, err := c.cfg.protocol(); err != nil || p != c.want {
			t.Errorf("%+v: protocol %q, %v; want %q", c.cfg, p, err, c.want)
		}
	}
	if err := (Config{Protocol: "http/json", Getenv: env(nil)}).Validate(); !errors.Is(err, ErrProtocol) {
		t.Errorf("http/json: %v, want ErrProtocol", err)
	}
	if got := (Config{Endpoint: "localhost:4318"}).endpointURL("/v1/traces"); got != "http://localhost:4318/v1/traces" {
		t.Errorf("endpoint URL %q", got)
	}
}

// unixTS reads CLOCK_MONOTONIC, the probes' clock.
type unixTS struct{}

func (unixTS) now(t *testing.T) uint64 {
	t.Helper()
	off, err := monotonicOffset()
	if err != nil {
		t.Fatal(err)
	}
	return uint64(time.Now().UnixNano() - off)
}

// TestLinksToOrphans: a break that started a root links the trace that
// split off (new-root; dropped at a span start), so every orphan can be
// reached from its broken trace; a stale-parent links the span started on
// the ended parent; breaks that started nothing link none.
func TestLinksToOrphans(t *testing.T) {
	other := otelTrace(t, "a5509ef7ed7a7d905026e01f1722f3fd", "1111111111111111")
	for _, c := range []struct {
		kind  analysis.Kind
		other bool
		want  int
	}{
		{analysis.NewRoot, true, 1},
		{analysis.Dropped, true, 1},
		{analysis.Dropped, false, 0}, // a check without a span start
		{analysis.LostAtSpawn, false, 0},
		{analysis.Overwritten, true, 0}, // a value replaced, not a trace split off
		{analysis.StaleParent, true, 1},
	} {
		b := analysis.Break{Kind: c.kind}
		if c.other {
			b.Other = other
		}
		l := links(b)
		if len(l) != c.want {
			t.Errorf("%s (other trace %v): %d links, want %d", c.kind, c.other, len(l), c.want)
			continue
		}
		if c.want == 1 && (l[0].SpanContext.TraceID().String() != "a5509ef7ed7a7d905026e01f1722f3fd" || l[0].SpanContext.SpanID().String() != "1111111111111111") {
			t.Errorf("%s: link %v, want the new trace's root span", c.kind, l[0].SpanContext)
		}
	}
}
