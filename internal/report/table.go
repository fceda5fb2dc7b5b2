package report

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// Table shows spawn sites sorted by breaks with their retention, and the
// distinct breaks. On a terminal it redraws in place (Refresh).
type Table struct {
	w    io.Writer
	live bool
	// Stacks adds, under the break table, each break's check stack and
	// spawn stack (--verbose): the line to fix is often frames above the
	// site, where a caller took context.Background().
	Stacks bool
}

// NewTable writes tables to w; live redraws the screen on Refresh.
func NewTable(w io.Writer, live bool) *Table { return &Table{w: w, live: live} }

// Break is shown by the table, not printed line by line.
func (t *Table) Break(findings.Process, analysis.Break) error { return nil }

// Refresh redraws the live view.
func (t *Table) Refresh(sums []findings.Summary) error {
	if !t.live {
		return nil
	}
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J") // home, clear screen
	for _, s := range sums {
		writeSummary(&b, s, "watching", t.Stacks)
	}
	b.WriteString("Ctrl-C to stop\n")
	_, err := io.WriteString(t.w, b.String())
	return err
}

// Summary prints the final table of a process.
func (t *Table) Summary(s findings.Summary) error {
	var b strings.Builder
	writeSummary(&b, s, "summary", t.Stacks)
	_, err := io.WriteString(t.w, b.String())
	return err
}

// loc names a frame for a terminal: names from the target are escaped.
func loc(f analysis.Frame) string {
	return fmt.Sprintf("%s %s:%d", Printable(f.Function), Printable(filepath.Base(f.File)), f.Line)
}

func writeSummary(w io.Writer, s findings.Summary, what string, stacks bool) {
	sampled := ""
	if s.Budget != nil {
		sampled = fmt.Sprintf(", probes in %.1f%% of the time (budget %g%%)", 100*s.SampledFraction, 100*s.Budget.Budget)
	}
	fmt.Fprintf(w, "ctxwatch %s: pid %d %s, %.1fs, %d events, %d lost%s\n\n",
		what, s.Process.PID, Printable(s.Executable), s.DurationS, s.Events, s.EventsLost, sampled)
	if why := s.Incomplete(); why != "" {
		fmt.Fprintf(w, "%s\n\n", why)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SPAWN SITE\tTRACED\tKEPT\tLOST\tNEW-ROOT\tNOT JUDGED\tRETENTION")
	for _, site := range s.SpawnSites {
		// A site none of whose goroutines has been judged is shown too:
		// traced spawns that no verdict covers are a gap in coverage,
		// not a success (a fire-and-forget task that never used a
		// context, a transport's connection loop).
		ret := "-"
		if r := site.Retention(); r >= 0 {
			ret = fmt.Sprintf("%.1f%%", 100*r)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", loc(site.Site), site.TracedSpawns, site.Propagated, site.Lost, site.NewRoot, site.NeverJudged, ret)
	}
	if len(s.SpawnSites) == 0 {
		fmt.Fprintln(tw, "(no goroutine started inside a trace yet)")
	}
	tw.Flush()
	fmt.Fprintln(w)
	// Send lines, only where channel elements were sent inside a trace.
	if len(s.HandoffSites) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEND SITE\tHANDED\tKEPT\tLOST\tNEW-ROOT\tNOT JUDGED\tRETENTION")
		for _, site := range s.HandoffSites {
			ret := "-"
			if r := site.Retention(); r >= 0 {
				ret = fmt.Sprintf("%.1f%%", 100*r)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", loc(site.Site), site.Handed, site.Propagated, site.Lost, site.NewRoot, site.NeverJudged, ret)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	// Log lines, only where records were written inside a trace.
	if len(s.LogSites) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "LOG SITE\tIN TRACE\tWITH TRACE\tWITHOUT")
		for _, site := range s.LogSites {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", loc(site.Site), site.InsideTrace, site.WithTrace, site.WithoutTrace)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	// Start lines, only where spans were started on a parent span of
	// their own goroutine (stale-parent's retention).
	if len(s.StartSites) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "START SITE\tON OWN PARENT\tKEPT\tSTALE\tRETENTION")
		for _, site := range s.StartSites {
			ret := "-"
			if r := site.Retention(); r >= 0 {
				ret = fmt.Sprintf("%.1f%%", 100*r)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", loc(site.Site), site.Started, site.Kept, site.Stale, ret)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BREAK\tCOUNT\tSITE\tSPAWNED AT")
	for _, br := range s.Breaks {
		spawn := "-"
		if len(br.Spawn) > 0 {
			spawn = loc(br.Spawn[0])
		} else if len(br.Handoff) > 0 {
			spawn = "sent at " + loc(br.Handoff[0])
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", br.Kind, br.Count, loc(br.Site), spawn)
	}
	if len(s.Breaks) == 0 {
		fmt.Fprintln(tw, "(no break)")
	}
	tw.Flush()
	if stacks {
		writeStacks(w, s.Breaks)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", Printable(n))
	}
	fmt.Fprintln(w)
}

// writeStacks lists each break's check stack (user frames, innermost
// first) and, for a goroutine's break, the stack of its spawn.
func writeStacks(w io.Writer, breaks []analysis.BreakCount) {
	for _, br := range breaks {
		if len(br.Stack) == 0 && len(br.Spawn) == 0 && len(br.Handoff) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nstack of %s at %s\n", br.Kind, loc(br.Site))
		for _, f := range br.Stack {
			fmt.Fprintf(w, "    %s\n", loc(f))
		}
		if len(br.Spawn) > 0 {
			fmt.Fprintf(w, "  spawned at\n")
			for _, f := range br.Spawn {
				fmt.Fprintf(w, "    %s\n", loc(f))
			}
		}
		if len(br.Handoff) > 0 {
			fmt.Fprintf(w, "  handed off at\n")
			for _, f := range br.Handoff {
				fmt.Fprintf(w, "    %s\n", loc(f))
			}
		}
	}
}
