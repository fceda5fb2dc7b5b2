// Package export sends ctxwatch's findings to OpenTelemetry backends: each
// break occurrence (rate-limited per site) as a span inside the trace that
// broke, and counts per site as metrics, over OTLP (gRPC or HTTP) and on a
// Prometheus endpoint. It consumes report and analysis types; nothing
// upstream imports OpenTelemetry.
package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

const (
	instrumentation = "github.com/ctxwatch/ctxwatch"
	// queueSize bounds the spans waiting for export per process: beyond
	// it the SDK drops them (counted) rather than grow or block the
	// event loop.
	queueSize = 4096
	// flushTimeout bounds the wait for a process's last spans at its end.
	flushTimeout = 10 * time.Second
)

// retry: exponential backoff from 1s to 5s, given up after 15s, so a
// collector that is down costs a few dropped spans (counted), not a hung
// ctxwatch.
var (
	retryGRPC = otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: 15 * time.Second}
	retryHTTP = otlptracehttp.RetryConfig(retryGRPC)
)

// Exporter is a findings.Sink that exports breaks and passes everything on
// to the next sink. Break, Refresh and Summary are called from one
// goroutine, as the watcher does.
type Exporter struct {
	next findings.Sink
	// newSpanExporter makes the span exporter of one process; nil when
	// traces are not exported.
	newSpanExporter func(context.Context) (sdktrace.SpanExporter, error)
	// offset turns the probes' CLOCK_MONOTONIC ns into Unix ns.
	offset  int64
	host    string
	limiter *limiter
	procs   map[uint32]*procTraces
	metrics *metrics // nil when no metrics are exported
}

// procTraces exports the spans of one watched process: its own tracer
// provider, because the resource (service.name, process.pid) is the
// process's.
type procTraces struct {
	tp         *sdktrace.TracerProvider
	tracer     trace.Tracer
	exp        *countingExporter
	ended      uint64
	suppressed uint64
}

// New returns an Exporter for cfg in front of next. Close it at the end.
func New(ctx context.Context, cfg Config, next findings.Sink) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var spans func(context.Context) (sdktrace.SpanExporter, error)
	if cfg.OTLP() {
		proto, _ := cfg.protocol()
		spans = func(ctx context.Context) (sdktrace.SpanExporter, error) { return cfg.spanExporter(ctx, proto) }
	}
	m, err := newMetrics(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e, err := newExporter(cfg, next, spans)
	if err != nil {
		return nil, errors.Join(err, m.close(ctx))
	}
	e.metrics = m
	return e, nil
}

func newExporter(cfg Config, next findings.Sink, spans func(context.Context) (sdktrace.SpanExporter, error)) (*Exporter, error) {
	offset, err := monotonicOffset()
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("read host name for the resource: %w", err)
	}
	rate := cfg.Rate
	if rate == 0 {
		rate = DefaultRate
	}
	return &Exporter{
		next:            next,
		newSpanExporter: spans,
		offset:          offset,
		host:            host,
		limiter:         newLimiter(rate),
		procs:           map[uint32]*procTraces{},
	}, nil
}

// monotonicOffset measures Unix time minus CLOCK_MONOTONIC (what
// bpf_ktime_get_ns returns), taking the reading with the narrowest
// bracket of a few so that the error stays well under a microsecond.
func monotonicOffset() (int64, error) {
	best, offset := int64(-1), int64(0)
	for range 5 {
		var ts unix.Timespec
		before := time.Now().UnixNano()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return 0, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
		}
		after := time.Now().UnixNano()
		if w := after - before; best < 0 || w < best {
			best, offset = w, before+w/2-ts.Nano()
		}
	}
	return offset, nil
}

func (e *Exporter) wall(mono uint64) time.Time { return time.Unix(0, int64(mono)+e.offset) }

func (c Config) spanExporter(ctx context.Context, proto Protocol) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case GRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithRetry(retryGRPC)}
		if u := c.endpointURL(""); u != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(u))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithRetry(retryHTTP)}
		if u := c.endpointURL("/v1/traces"); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP %s span exporter: %w", proto, err)
	}
	return exp, nil
}

// resource describes the watched process, not ctxwatch: the break spans
// belong to its traces. Its own OTEL_SERVICE_NAME wins over ctxwatch's
// OTEL_RESOURCE_ATTRIBUTES, which add to it.
func (e *Exporter) resource(ctx context.Context, p findings.Process) (*resource.Resource, error) {
	name := p.ServiceName
	if name == "" {
		name = p.Executable
	}
	attrs := []attribute.KeyValue{
		semconv.ServiceName(name),
		semconv.ProcessPID(int(p.PID)),
		semconv.ProcessExecutableName(p.Executable),
		semconv.ProcessRuntimeName("go"),
		semconv.HostName(e.host),
	}
	if p.GoVersion != "" {
		attrs = append(attrs, semconv.ProcessRuntimeVersion(p.GoVersion))
	}
	if p.ContainerID != "" {
		attrs = append(attrs, semconv.ContainerID(p.ContainerID))
	}
	if p.PodUID != "" {
		attrs = append(attrs, semconv.K8SPodUID(p.PodUID))
	}
	if p.NodeName != "" {
		attrs = append(attrs, semconv.K8SNodeName(p.NodeName))
	}
	r, err := resource.New(ctx, resource.WithFromEnv(), resource.WithSchemaURL(semconv.SchemaURL), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("resource of pid %d: %w", p.PID, err)
	}
	return r, nil
}

func (e *Exporter) traces(p findings.Process) (*procTraces, error) {
	if pt, ok := e.procs[p.PID]; ok {
		return pt, nil
	}
	ctx := context.Background()
	res, err := e.resource(ctx, p)
	if err != nil {
		return nil, err
	}
	inner, err := e.newSpanExporter(ctx)
	if err != nil {
		return nil, err
	}
	exp := &countingExporter{SpanExporter: inner}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(idGenerator{}),
		sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(queueSize), sdktrace.WithBatchTimeout(time.Second)),
	)
	pt := &procTraces{tp: tp, tracer: tp.Tracer(instrumentation), exp: exp}
	e.procs[p.PID] = pt
	return pt, nil
}

// Break exports b as a span, unless its site is over its rate.
func (e *Exporter) Break(p findings.Process, b analysis.Break) error {
	err := e.next.Break(p, b)
	if e.metrics != nil {
		e.metrics.addBreak(p, b)
	}
	if e.newSpanExporter == nil || !b.Trace.Valid() {
		return err
	}
	pt, perr := e.traces(p)
	if perr != nil {
		return errors.Join(err, perr)
	}
	ok, suppressed := e.limiter.allow(keyOf(b), b.Time)
	if !ok {
		pt.suppressed++
		return err
	}
	start := b.Time
	if b.SpawnTime != 0 && b.SpawnTime <= b.Time {
		start = b.SpawnTime
	}
	_, span := pt.tracer.Start(parentContext(b), spanName(b.Kind),
		trace.WithTimestamp(e.wall(start)),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(breakAttrs(b, suppressed)...),
		trace.WithLinks(links(b)...))
	span.End(trace.WithTimestamp(e.wall(b.Time)))
	pt.ended++
	return err
}

// Refresh keeps the metrics current while processes run.
func (e *Exporter) Refresh(sums []findings.Summary) error {
	if e.metrics != nil {
		for _, s := range sums {
			e.metrics.update(s)
		}
	}
	return nil
}

// Summary flushes the process's spans, adds what became of them to the
// summary, and passes it on.
func (e *Exporter) Summary(s findings.Summary) error {
	var errs []error
	if e.newSpanExporter != nil {
		st := findings.ExportStats{}
		if pt, ok := e.procs[s.Process.PID]; ok {
			delete(e.procs, s.Process.PID)
			st, errs = pt.shutdown()
		}
		s.Export = &st
		s.Notes = append(slices.Clone(s.Notes), fmt.Sprintf("otlp: %d break spans sent, %d dropped, %d suppressed by the rate limit",
			st.Sent, st.Dropped, st.Suppressed))
		for _, err := range errs {
			s.Notes = append(s.Notes, "otlp: "+err.Error())
		}
	}
	if e.metrics != nil {
		e.metrics.update(s)
	}
	return errors.Join(append(errs, e.next.Summary(s))...)
}

func (pt *procTraces) shutdown() (findings.ExportStats, []error) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	var errs []error
	if err := pt.tp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flush break spans: %w", err))
	}
	sent := pt.exp.sent.Load()
	return findings.ExportStats{Sent: sent, Dropped: pt.ended - min(sent, pt.ended), Suppressed: pt.suppressed}, errs
}

// Close flushes what is left (processes never summarised, last metrics)
// and stops the metrics endpoint.
func (e *Exporter) Close(ctx context.Context) error {
	var errs []error
	for pid, pt := range e.procs {
		delete(e.procs, pid)
		_, perr := pt.shutdown()
		errs = append(errs, perr...)
	}
	if e.metrics != nil {
		errs = append(errs, e.metrics.close(ctx))
	}
	return errors.Join(errs...)
}

// countingExporter counts the spans the collector accepted: spans made
// minus spans accepted is what was dropped, whether the SDK's queue was
// full or the export failed after its retries.
type countingExporter struct {
	sdktrace.SpanExporter
	sent atomic.Uint64
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.SpanExporter.ExportSpans(ctx, spans)
	if err == nil {
		c.sent.Add(uint64(len(spans)))
	}
	return err
}
