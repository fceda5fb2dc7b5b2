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

	mu    sync.Mutex // sites is read by the SDK's collection goroutines
	sites map[spawnKey]analysis.SpawnSite
}

type spawnKey struct {
	pid            uint32
	exe            string
	container, pod string
	site           analysis.Frame
}

// processAttrs identify a process in metrics: on a node, the container
// and pod too (the collector's k8sattributes processor adds their names).
func processAttrs(pid uint32, exe, container, pod string, rest ...attribute.KeyValue) metric.MeasurementOption {
	attrs := append([]attribute.KeyValue{semconv.ProcessPID(int(pid)), semconv.ProcessExecutableName(exe)}, rest...)
	if container != "" {
		attrs = append(attrs, semconv.ContainerID(container))
	}
	if pod != "" {
		attrs = append(attrs, semconv.K8SPodUID(pod))
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
	m := &metrics{sites: map[spawnKey]analysis.SpawnSite{}}
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
			set := processAttrs(k.pid, k.exe, k.container, k.pod,
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
	return nil
}

func (m *metrics) addBreak(p findings.Process, b analysis.Break) {
	m.breaks.Add(context.Background(), 1, processAttrs(p.PID, p.Executable, p.ContainerID, p.PodUID,
		attribute.String(string(attrKind), string(b.Kind)),
		semconv.CodeFunctionName(b.Site.Function),
		semconv.CodeFilePath(b.Site.File),
		semconv.CodeLineNumber(b.Site.Line)))
}

// update takes a process's latest counts per spawn site. A process that
// exited keeps its last counts: counters must not go back.
func (m *metrics) update(s findings.Summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, site := range s.SpawnSites {
		m.sites[spawnKey{pid: s.Process.PID, exe: s.Executable, container: s.ContainerID, pod: s.PodUID, site: site.Site}] = site
	}
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
