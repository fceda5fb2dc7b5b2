// Command slogcompat logs with log/slog inside a trace of a custom key
// (--trace-key type=main.traceKey), in code every Go release with log/slog
// (1.21 and later) builds, for TestLogToolchains: per unit of work, one
// record without a context (log-without-trace), one with the unit's
// context, one with LogAttrs on Background (log-without-trace), one at a
// disabled level (not written).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

type traceKey struct{}

func work(ctx context.Context, l *slog.Logger) {
	l.Info("no context")                                        // want:log without
	l.InfoContext(ctx, "the unit's context")                    // want:log with
	l.LogAttrs(context.Background(), slog.LevelWarn, "rebuilt") // want:log without
	l.Debug("not written")
}

func main() {
	l := slog.New(slog.NewTextHandler(io.Discard, nil))
	const units = 5
	for i := 0; i < units; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		work(context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", i+1)), l)
		cancel()
	}
	l.Info("outside any trace")
	fmt.Printf("slogcompat: requests %d\n", units)
}
