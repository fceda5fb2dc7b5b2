package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/ctxwatch/ctxwatch/internal/agent"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

const nodeUsage = `ctxwatch node watches every Go process of this machine: one agent per
Kubernetes node (a DaemonSet, see deploy/), or per host.

Usage:
  sudo ctxwatch node [flags]

It finds the Go processes running now (by their build info) and each new one
right after its exec (a BPF tracepoint on sched_process_exec, no polling), and
lets go of those that exit. Processes of one executable share one set of
uprobes: twenty replicas cost one attachment per probe, and each process is
told apart by its pid in a BPF map. Each process is tagged with its container
id and pod UID, read from /proc/PID/cgroup (containerd, CRI-O, Docker; cgroup
v1 and v2), and the node name: on every JSON line, and as container.id,
k8s.pod.uid and k8s.node.name on exported spans and metrics. ctxwatch needs no
API-server access: the collector's k8sattributes processor adds the names.

Reports: JSON lines on standard output (a "summary" per process when it exits
and for all at SIGTERM), logs as JSON on standard error, break spans over OTLP
to OTEL_EXPORTER_OTLP_ENDPOINT (a DaemonSet points it at the node's collector
through status.hostIP), Prometheus metrics and /healthz on --metrics-addr.

Cost: the probes of a shared executable trap in every process running it,
watched or not (--exclude, --max-procs): uprobes belong to the file.

Flags:
`

// defaultNodeBudget is --overhead-budget's default in node mode, percent
// of the CPUs of the machine, per executable.
const defaultNodeBudget = 5

func parseNodeFlags(args []string, stderr io.Writer) (config, error) {
	c := config{target: agent.Target{Node: &agent.Node{}}}
	n := c.target.Node
	c.export.MetricsAddr = ":9464"
	var keys []string
	fs := flag.NewFlagSet("ctxwatch node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, nodeUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Exit status: 0 after SIGTERM, SIGINT or --duration; 1 when ctxwatch itself
failed; 2 for a usage error.
`)
	}
	addWatchFlags(fs, &c, &keys, "json")
	fs.Var(listFlag{&n.Match}, "match", "watch only executables whose file name matches `GLOB` (e.g. 'api-*'), repeatable; default: every Go program")
	fs.Var(listFlag{&n.Exclude}, "exclude", "never watch executables whose file name matches `GLOB`, repeatable")
	fs.IntVar(&n.MaxProcs, "max-procs", 64, "watch at most `N` processes at once; others are logged and left alone")
	fs.StringVar(&n.NodeName, "node-name", os.Getenv("NODE_NAME"), "the node's `NAME` for k8s.node.name; default: $NODE_NAME (the downward API's spec.nodeName)")
	fs.StringVar(&c.logFormat, "log-format", "json", "standard error's `format`: json (one object per line) or text")
	fs.Float64Var(&c.budgetPct, "overhead-budget", defaultNodeBudget, "keep the estimated cost of each executable's probes under `PCT` percent of the CPUs\n(probes are detached while over budget); 0 turns it off")
	if err := parseQuiet(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: ctxwatch node takes no arguments, got %q", errUsage, fs.Args())
	}
	for _, g := range append(append([]string(nil), n.Match...), n.Exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			return c, fmt.Errorf("%w: --match/--exclude %q: %v", errUsage, g, err)
		}
	}
	switch {
	case n.MaxProcs < 1 || n.MaxProcs > uprobe.MaxProcs:
		return c, fmt.Errorf("%w: --max-procs %d: want 1 to %d", errUsage, n.MaxProcs, uprobe.MaxProcs)
	case c.logFormat != "json" && c.logFormat != "text":
		return c, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, c.logFormat)
	}
	return c, checkWatchFlags(&c, keys)
}
