package target

import (
	"fmt"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/pcln"
)

// Resolver symbolizes the return addresses of a process running b, loaded
// at bias (0 for a non-PIE executable), with b's line table: inlined calls
// expanded, innermost first. The line table is the one b holds now.
func (b *Binary) Resolver(bias uint64) analysis.Resolver {
	return resolver{table: b.LineTable(), bias: bias}
}

type resolver struct {
	table *pcln.Table
	bias  uint64
}

func (r resolver) FramesForReturn(ret uint64) []analysis.Frame {
	frames, err := r.table.FramesForReturn(ret - r.bias)
	if err != nil || len(frames) == 0 {
		// An address outside the line table still shows up, as itself.
		return []analysis.Frame{{Function: fmt.Sprintf("?%#x", ret)}}
	}
	out := make([]analysis.Frame, len(frames))
	for i, f := range frames {
		out[i] = analysis.Frame{Function: f.Function, File: f.File, Line: f.Line}
	}
	return out
}
