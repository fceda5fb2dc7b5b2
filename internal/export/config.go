package export

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Protocol is an OTLP transport, named as in OTEL_EXPORTER_OTLP_PROTOCOL.
type Protocol string

const (
	GRPC Protocol = "grpc"
	HTTP Protocol = "http/protobuf"
)

// DefaultRate is the default number of break spans per second per site.
// A break in a hot path happens on every request: a few spans a second
// show it in any trace view without doubling the collector's load.
const DefaultRate = 5

// ErrProtocol means an OTLP protocol other than grpc or http/protobuf.
var ErrProtocol = errors.New("unsupported OTLP protocol")

// Config says where findings go. The zero value sends nothing.
type Config struct {
	// Endpoint is the collector's base URL (--otlp-endpoint), as in
	// OTEL_EXPORTER_OTLP_ENDPOINT: http://host:4317 for gRPC,
	// http://host:4318 for HTTP (the signal's path is appended). A bare
	// host:port means plain-text http://host:port. Empty: the variables.
	Endpoint string
	// Protocol overrides OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (--otlp-protocol).
	Protocol string
	// Rate is the number of break spans per second per site; 0 means
	// DefaultRate.
	Rate float64
	// MetricsAddr, when set, serves Prometheus metrics on /metrics there.
	MetricsAddr string
	// Getenv reads ctxwatch's environment; nil means os.Getenv.
	Getenv func(string) string
}

func (c Config) getenv(k string) string {
	if c.Getenv == nil {
		return os.Getenv(k)
	}
	return c.Getenv(k)
}

// OTLP reports whether anything goes to an OTLP collector: only when an
// endpoint or a protocol is given, by flag or by variable, so that
// ctxwatch never sends data to a default address nobody asked for.
func (c Config) OTLP() bool {
	if c.Endpoint != "" || c.Protocol != "" {
		return true
	}
	for _, k := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	} {
		if c.getenv(k) != "" {
			return true
		}
	}
	return false
}

// Enabled reports whether an Exporter has anything to do.
func (c Config) Enabled() bool { return c.OTLP() || c.MetricsAddr != "" }

// protocol is the flag's, else the traces variable's, else the general
// variable's protocol; http/protobuf by default, as the OTLP exporter
// specification asks.
func (c Config) protocol() (Protocol, error) {
	p := c.Protocol
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p == "" {
			p = c.getenv(k)
		}
	}
	switch Protocol(strings.TrimSpace(p)) {
	case "", HTTP:
		return HTTP, nil
	case GRPC:
		return GRPC, nil
	}
	return "", fmt.Errorf("OTLP protocol %q: %w (want grpc or http/protobuf)", p, ErrProtocol)
}

// Validate checks what can be checked before a process is watched.
func (c Config) Validate() error {
	if c.Rate < 0 {
		return fmt.Errorf("break span rate %v: must not be negative", c.Rate)
	}
	if !c.OTLP() {
		return nil
	}
	_, err := c.protocol()
	return err
}

// endpointURL is the flag's endpoint for signal path (e.g. "/v1/traces"),
// or "" to let the OTLP exporters read their variables. gRPC ignores the
// path.
func (c Config) endpointURL(path string) string {
	if c.Endpoint == "" {
		return ""
	}
	u := c.Endpoint
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return strings.TrimSuffix(u, "/") + path
}
