package main

import (
	"io"
	"log"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"

	"github.com/ctxwatch/ctxwatch/internal/report"
)

// warnExportOnce makes every export error one warning, at the first. The
// OpenTelemetry SDK reports each failed batch through its global error
// handler (by default a log line each): a collector that does not answer
// would fail every one. Reporting goes on locally, and the summary counts
// the break spans that were not sent. The returned func is for errors the
// SDK returns rather than handles (flushing at the end).
func warnExportOnce(errLog *log.Logger) func(error) {
	var once sync.Once
	warn := func(err error) {
		once.Do(func() {
			errLog.Printf("otlp: %v; reporting goes on here, and the summary counts the break spans not sent", err)
		})
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(warn))
	return warn
}

// lineEscaper writes log lines with what is not printable escaped:
// executable paths and function names come from the target, and must not
// reach the user's terminal as escape sequences or split a line. Each
// Write is one line of a log.Logger.
type lineEscaper struct{ w io.Writer }

func (e lineEscaper) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if _, err := io.WriteString(e.w, report.Printable(line)+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}
