package export

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// Attribute keys of ctxwatch's own; code locations use the semantic
// conventions of the semconv version the SDK in go.mod uses.
const (
	attrKind            = attribute.Key("ctxwatch.break.kind")
	attrSuppressed      = attribute.Key("ctxwatch.break.suppressed")
	attrCount           = attribute.Key("ctxwatch.break.count")
	attrGoroutine       = attribute.Key("ctxwatch.goroutine.id")
	attrParentGoroutine = attribute.Key("ctxwatch.spawn.goroutine.id")
	attrSpawnFunction   = attribute.Key("ctxwatch.spawn.function")
	attrSpawnFile       = attribute.Key("ctxwatch.spawn.file")
	attrSpawnLine       = attribute.Key("ctxwatch.spawn.line")
	attrSpawnStack      = attribute.Key("ctxwatch.spawn.stack")
	attrHandoffFunction = attribute.Key("ctxwatch.handoff.function") // lost-at-handoff: the send
	attrHandoffFile     = attribute.Key("ctxwatch.handoff.file")
	attrHandoffLine     = attribute.Key("ctxwatch.handoff.line")
	attrHandoffStack    = attribute.Key("ctxwatch.handoff.stack")
	attrStack           = attribute.Key("ctxwatch.stack")    // user frames of the check, innermost first
	attrAfter           = attribute.Key("ctxwatch.after_ns") // from the spawn to the judged act
	attrTraceValue      = attribute.Key("ctxwatch.trace.value")
	attrOtherTrace      = attribute.Key("ctxwatch.other_trace.value")
)

// spanName is what a trace view lists.
func spanName(k analysis.Kind) string { return "trace break: " + string(k) }

// breakAttrs are the attributes of b's span; suppressed is the number of
// occurrences of its site the rate limit left out since the last span.
func breakAttrs(b analysis.Break, suppressed uint64) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attrKind.String(string(b.Kind)),
		semconv.CodeFunctionName(b.Site.Function),
		semconv.CodeFilePath(b.Site.File),
		semconv.CodeLineNumber(b.Site.Line),
		attrGoroutine.Int64(int64(b.Goroutine)),
		attrCount.Int64(int64(b.Count)),
		attrSuppressed.Int64(int64(suppressed)),
	}
	if b.ParentGoroutine != 0 {
		a = append(a, attrParentGoroutine.Int64(int64(b.ParentGoroutine)))
	}
	if len(b.Stack) > 0 {
		a = append(a, attrStack.StringSlice(frameStrings(b.Stack)))
	}
	if after := b.After(); after > 0 {
		a = append(a, attrAfter.Int64(int64(after)))
	}
	if len(b.Spawn) > 0 {
		stack := frameStrings(b.Spawn)
		a = append(a,
			attrSpawnFunction.String(b.Spawn[0].Function),
			attrSpawnFile.String(b.Spawn[0].File),
			attrSpawnLine.Int(b.Spawn[0].Line),
			attrSpawnStack.StringSlice(stack))
	}
	if len(b.Handoff) > 0 {
		a = append(a,
			attrHandoffFunction.String(b.Handoff[0].Function),
			attrHandoffFile.String(b.Handoff[0].File),
			attrHandoffLine.Int(b.Handoff[0].Line),
			attrHandoffStack.StringSlice(frameStrings(b.Handoff)))
	}
	// A custom key's value is shown as the user wrote it: a value that is
	// not a W3C trace id is exported under a hash of it, which nobody
	// could search for.
	if b.Trace.Key != 0 {
		a = append(a, attrTraceValue.String(b.Trace.Label()))
	}
	if b.Other.Valid() && b.Other.Key != 0 {
		a = append(a, attrOtherTrace.String(b.Other.Label()))
	}
	return a
}

// parentContext places a break span in the trace that broke: under the
// span that was current where the trace was last seen (OTel keys), or at
// the trace's top with its id (custom keys have no spans).
func parentContext(b analysis.Break) context.Context {
	tid := trace.TraceID(b.Trace.TraceID())
	if b.Trace.Key == 0 && b.Trace.Span != [8]byte{} {
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    tid,
			SpanID:     b.Trace.Span,
			TraceFlags: trace.FlagsSampled,
			Remote:     true,
		}))
	}
	return context.WithValue(context.Background(), traceIDKey{}, tid)
}

// links: a break that started a root (new-root, or dropped at a span
// start on a context without the trace) points at the trace that split
// off, so a trace view can jump from the broken trace to its orphan. A
// stale-parent break, placed under the ended parent, points at the span
// started on it, in the same trace.
func links(b analysis.Break) []trace.Link {
	if b.Kind != analysis.NewRoot && b.Kind != analysis.Dropped && b.Kind != analysis.StaleParent && b.Kind != analysis.LostAtHandoff || !b.Other.Valid() {
		return nil
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    b.Other.TraceID(),
		SpanID:     b.Other.Span,
		TraceFlags: trace.FlagsSampled,
	})
	return []trace.Link{{SpanContext: sc, Attributes: []attribute.KeyValue{attrKind.String(string(b.Kind))}}}
}

// traceIDKey carries the trace id a parentless break span must have.
type traceIDKey struct{}

// idGenerator gives a root span the trace id of the trace that broke
// (carried in the context by parentContext), and random ids otherwise.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(traceIDKey{}).(trace.TraceID)
	if !ok || !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64()|1)
	}
	return tid, idGenerator{}.NewSpanID(ctx, tid)
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], rand.Uint64()|1) // never the invalid zero id
	return sid
}

// frameStrings spells frames as "function (file:line)", innermost first.
func frameStrings(frames []analysis.Frame) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = f.String()
	}
	return out
}
