package export

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// metrics counts breaks and spawns per site through the OTel metrics SDK,
// read by an OTLP exporter and/or a Prometheus registry.
type metrics struct {
	mp     *sdkmetric.MeterProvider
	breaks metric.Int64Counter
	srv    *http.Server // nil without --metrics-addr
	addr   net.Addr     // where srv listens
	served chan error

	mu     sync.Mutex // sites and procs are read by the SDK's collection goroutines
	sites  map[spawnKey]analysis.SpawnSite
	logs   map[spawnKey]analysis.LogSite     // by log site
	sends  map[spawnKey]analysis.HandoffSite // by send site
	starts map[spawnKey]analysis.StartSite   // by Start site
	procs  map[procKey]procStats
}

// procKey identifies a watched process in metrics.
type procKey struct {
	pid                  uint32
	exe                  string
	container, pod, node string
}

func procKeyOf(p findings.Process) procKey {
	return procKey{pid: p.PID, exe: p.Executable, container: p.ContainerID, pod: p.PodUID, node: p.NodeName}
}

type spawnKey struct {
	procKey
	site analysis.Frame
}

// procStats is what a process's latest summary says about the watch
// itself rather than its goroutines.
type procStats struct {
	eventsLost uint64
	sampled    float64
	budget     *findings.BudgetStats // nil without --overhead-budget
}

// attrs identify a process in metrics: on a node, the container, pod and
// node too. Prometheus keeps no resource attributes on the series (only
// on target_info), so the node goes on each series, where a dashboard can
// select by it; the collector's k8sattributes processor adds names.
func (k procKey) attrs(rest ...attribute.KeyValue) metric.MeasurementOption {
	attrs := append([]attribute.KeyValue{semconv.ProcessPID(int(k.pid)), semconv.ProcessExecutableName(k.exe)}, rest...)
	if k.container != "" {
		attrs = append(attrs, semconv.ContainerID(k.container))
	}
	if k.pod != "" {
		attrs = append(attrs, semconv.K8SPodUID(k.pod))
	}
	if k.node != "" {
		attrs = append(attrs, semconv.K8SNodeName(k.node))
	}
	return metric.WithAttributes(attrs...)
}

// newMetrics returns nil when no metric is wanted: no OTLP (or
// OTEL_METRICS_EXPORTER=none, e.g. for a Jaeger that takes only traces)
// and no --metrics-addr.
func newMetrics(ctx context.Context, cfg Config) (*metrics, error) {
	otlp := cfg.OTLP() && cfg.getenv("OTEL_METRICS_EXPORTER") != "none"
	if !otlp && cfg.MetricsAddr == "" {
		return nil, nil
	}
	m := &metrics{sites: map[spawnKey]analysis.SpawnSite{}, logs: map[spawnKey]analysis.LogSite{},
		sends: map[spawnKey]analysis.HandoffSite{}, starts: map[spawnKey]analysis.StartSite{}, procs: map[procKey]procStats{}}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName("ctxwatch")), resource.WithFromEnv(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("resource of ctxwatch's metrics: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	if otlp {
		exp, err := cfg.metricExporter(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	var reg *prometheus.Registry
	if cfg.MetricsAddr != "" {
		// A registry of our own: nothing global, and no Go runtime
		// metrics of ctxwatch mixed with the target's findings.
		reg = prometheus.NewRegistry()
		pe, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("create Prometheus exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(pe))
	}
	m.mp = sdkmetric.NewMeterProvider(opts...)
	if err := m.instruments(); err != nil {
		return nil, errors.Join(err, m.mp.Shutdown(ctx))
	}
	if reg != nil {
		// Listen now, so a busy address fails ctxwatch at start.
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("serve metrics on %s: %w", cfg.MetricsAddr, err), m.mp.Shutdown(ctx))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		// Liveness for a DaemonSet's probes: served while ctxwatch runs.
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		m.addr = ln.Addr()
		m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		m.served = make(chan error, 1)
		go func() { m.served <- m.srv.Serve(ln) }()
	}
	return m, nil
}

func (c Config) metricExporter(ctx context.Context) (sdkmetric.Exporter, error) {
	proto, err := c.protocol()
	if err != nil {
		return nil, err
	}
	var exp sdkmetric.Exporter
	if proto == GRPC {
		var opts []otlpmetricgrpc.Option
		if u := c.endpointURL(""); u != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(u))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	} else {
		var opts []otlpmetrichttp.Option
		if u := c.endpointURL("/v1/metrics"); u != "" {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(u))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP %s metric exporter: %w", proto, err)
	}
	return exp, nil
}

func (m *metrics) instruments() error {
	meter := m.mp.Meter(instrumentation)
	var err error
	m.breaks, err = meter.Int64Counter("ctxwatch.breaks", metric.WithUnit("{break}"),
		metric.WithDescription("Occurrences of trace breaks, by kind and site."))
	if err != nil {
		return fmt.Errorf("create breaks counter: %w", err)
	}
	traced, err1 := meter.Int64ObservableCounter("ctxwatch.spawns.traced", metric.WithUnit("{goroutine}"),
		metric.WithDescription("Goroutines started inside a trace, by spawn site."))
	propagated, err2 := meter.Int64ObservableCounter("ctxwatch.spawns.propagated", metric.WithUnit("{goroutine}"),
		metric.WithDescription("Goroutines whose first check carried the trace they were started in, by spawn site."))
	lost, err3 := meter.Int64ObservableCounter("ctxwatch.spawns.lost", metric.WithUnit("{goroutine}"),
		metric.WithDescription("Goroutines that lost the trace they were started in (lost-at-spawn or new-root), by spawn site."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("create spawn counters: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, s := range m.sites {
			set := k.attrs(
				semconv.CodeFunctionName(k.site.Function),
				semconv.CodeFilePath(k.site.File),
				semconv.CodeLineNumber(k.site.Line))
			o.ObserveInt64(traced, int64(s.TracedSpawns), set)
			o.ObserveInt64(propagated, int64(s.Propagated), set)
			o.ObserveInt64(lost, int64(s.Lost+s.NewRoot), set)
		}
		return nil
	}, traced, propagated, lost)
	if err != nil {
		return fmt.Errorf("register spawn counters: %w", err)
	}
	if err := m.logInstruments(meter); err != nil {
		return err
	}
	if err := m.handoffInstruments(meter); err != nil {
		return err
	}
	if err := m.startInstruments(meter); err != nil {
		return err
	}
	return m.processInstruments(meter)
}

// logInstruments count the log records written inside a trace, by log
// site; those without the trace are the log-without-trace breaks.
func (m *metrics) logInstruments(meter metric.Meter) error {
	inside, err1 := meter.Int64ObservableCounter("ctxwatch.logs.in_trace", metric.WithUnit("{record}"),
		metric.WithDescription("Log records (log/slog, --log-func) written by goroutines with a trace in scope, by log site."))
	with, err2 := meter.Int64ObservableCounter("ctxwatch.logs.with_trace", metric.WithUnit("{record}"),
		metric.WithDescription("Log records written inside a trace with a context that carries it, by log site."))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("create log counters: %w", err)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, s := range m.logs {
			set := k.attrs(
				semconv.CodeFunctionName(k.site.Function),
				semconv.CodeFilePath(k.site.File),
				semconv.CodeLineNumber(k.site.Line))
			o.ObserveInt64(inside, int64(s.InsideTrace), set)
			o.ObserveInt64(with, int64(s.WithTrace), set)
		}
		return nil
	}, inside, with)
	if err != nil {
		return fmt.Errorf("register log counters: %w", err)
	}
	return nil
}

// handoffInstruments count the channel elements sent inside a trace and
// handed to a receiver, by send site, as the spawn counters count spawns:
// lost counts lost-at-handoff (no trace, or a new root).
func (m *metrics) handoffInstruments(meter metric.Meter) error {
	handed, err1 := meter.Int64ObservableCounter("ctxwatch.handoffs.handed", metric.WithUnit("{element}"),
		metric.WithDescription("Channel elements sent from user code inside a trace and received by user code, by send site."))
	propagated, err2 := meter.Int64ObservableCounter("ctxwatch.handoffs.propagated", metric.WithUnit("{element}"),
		metric.WithDescription("Hand-offs whose receiver acted next with the trace, by send site."))
	lost, err3 := meter.Int64ObservableCounter("ctxwatch.handoffs.lost", metric.WithUnit("{element}"),
		metric.WithDescription("Hand-offs whose receiver acted next without the trace or started another (lost-at-handoff), by send site."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("create hand-off counters: %w", err)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, s := range m.sends {
			set := k.attrs(
				semconv.CodeFunctionName(k.site.Function),
				semconv.CodeFilePath(k.site.File),
				semconv.CodeLineNumber(k.site.Line))
			o.ObserveInt64(handed, int64(s.Handed), set)
			o.ObserveInt64(propagated, int64(s.Propagated), set)
			o.ObserveInt64(lost, int64(s.Lost+s.NewRoot), set)
		}
		return nil
	}, handed, propagated, lost)
	if err != nil {
		return fmt.Errorf("register hand-off counters: %w", err)
	}
	return nil
}

// startInstruments count the spans started on a parent span of their
// own goroutine, by Start site, as the log counters count records: kept
// had an open parent, stale an ended one (stale-parent). The probes count
// them in the kernel: stale is exact even when events were lost.
func (m *metrics) startInstruments(meter metric.Meter) error {
	own, err1 := meter.Int64ObservableCounter("ctxwatch.starts.own_parent", metric.WithUnit("{span}"),
		metric.WithDescription("Spans started (OTel SDK tracer Start) on a parent span that the same goroutine started, by Start site."))
	kept, err2 := meter.Int64ObservableCounter("ctxwatch.starts.kept", metric.WithUnit("{span}"),
		metric.WithDescription("Spans started on an own parent span that was still open, by Start site."))
	stale, err3 := meter.Int64ObservableCounter("ctxwatch.starts.stale", metric.WithUnit("{span}"),
		metric.WithDescription("Spans started on an own parent span that had ended (stale-parent), by Start site."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("create start counters: %w", err)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, s := range m.starts {
			set := k.attrs(
				semconv.CodeFunctionName(k.site.Function),
				semconv.CodeFilePath(k.site.File),
				semconv.CodeLineNumber(k.site.Line))
			o.ObserveInt64(own, int64(s.Started), set)
			o.ObserveInt64(kept, int64(s.Kept), set)
			o.ObserveInt64(stale, int64(s.Stale), set)
		}
		return nil
	}, own, kept, stale)
	if err != nil {
		return fmt.Errorf("register start counters: %w", err)
	}
	return nil
}

// processInstruments report on the watch of each process: what it could
// not see (events lost, probes detached by the overhead budget), so that a
// dashboard can tell few breaks from little watched.
func (m *metrics) processInstruments(meter metric.Meter) error {
	lost, err1 := meter.Int64ObservableCounter("ctxwatch.events.lost", metric.WithUnit("{event}"),
		metric.WithDescription("Records the probes could not deliver (ring buffer full) or store (goroutine state map full), by process; "+
			"in node mode the processes of one executable share the count."))
	sampled, err2 := meter.Float64ObservableGauge("ctxwatch.sampled", metric.WithUnit("1"),
		metric.WithDescription("Share of the watch during which the probes were attached (1 without an overhead budget): counts cover only that share."))
	overhead, err3 := meter.Float64ObservableGauge("ctxwatch.overhead.estimated", metric.WithUnit("1"),
		metric.WithDescription("Estimated cost of the probes, a fraction of the target's CPUs; only with an overhead budget."))
	budget, err4 := meter.Float64ObservableGauge("ctxwatch.overhead.budget", metric.WithUnit("1"),
		metric.WithDescription("The overhead budget (--overhead-budget), a fraction of the target's CPUs."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("create process instruments: %w", err)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, st := range m.procs {
			set := k.attrs()
			o.ObserveInt64(lost, int64(st.eventsLost), set)
			o.ObserveFloat64(sampled, st.sampled, set)
			if st.budget != nil {
				o.ObserveFloat64(overhead, st.budget.Overhead, set)
				o.ObserveFloat64(budget, st.budget.Budget, set)
			}
		}
		return nil
	}, lost, sampled, overhead, budget)
	if err != nil {
		return fmt.Errorf("register process instruments: %w", err)
	}
	return nil
}

func (m *metrics) addBreak(p findings.Process, b analysis.Break) {
	m.breaks.Add(context.Background(), 1, procKeyOf(p).attrs(
		attribute.String(string(attrKind), string(b.Kind)),
		semconv.CodeFunctionName(b.Site.Function),
		semconv.CodeFilePath(b.Site.File),
		semconv.CodeLineNumber(b.Site.Line)))
}

// update takes a process's latest counts per spawn site and the state of
// its watch. A process that exited keeps its last counts: counters must
// not go back.
func (m *metrics) update(s findings.Summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := procKeyOf(s.Process)
	for _, site := range s.SpawnSites {
		m.sites[spawnKey{procKey: k, site: site.Site}] = site
	}
	for _, site := range s.LogSites {
		m.logs[spawnKey{procKey: k, site: site.Site}] = site
	}
	for _, site := range s.HandoffSites {
		m.sends[spawnKey{procKey: k, site: site.Site}] = site
	}
	for _, site := range s.StartSites {
		m.starts[spawnKey{procKey: k, site: site.Site}] = site
	}
	st := procStats{eventsLost: s.EventsLost, sampled: s.SampledFraction}
	if s.Budget != nil {
		b := *s.Budget // the summary's copy: the caller may reuse it
		st.budget = &b
	}
	m.procs[k] = st
}

// close pushes the last metrics and stops the endpoint.
func (m *metrics) close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	var errs []error
	if m.srv != nil {
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop metrics endpoint: %w", err))
		}
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve metrics: %w", err))
		}
	}
	if err := m.mp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flush metrics: %w", err))
	}
	return errors.Join(errs...)
}
