#!/usr/bin/env bash
# Remakes docs/jaeger-break.png: runs Jaeger v2 (make jaeger) on loopback,
# examples/otelservice under ctxwatch with both sending to it over OTLP/gRPC,
# takes a broken request's trace from Jaeger's query API and shows it,
# abridged, in headless Chromium (Debian: apt-get install chromium python3).
# A Jaeger built from its Go module serves no UI, so the query API's JSON
# is what can be shown. Needs root (ctxwatch) and free ports 4317, 4318,
# 16685, 16686.
set -euo pipefail
cd "$(dirname "$0")/.."
jaeger=${CTXWATCH_CACHE:-/var/cache/ctxwatch}/jaeger-v1.76.0/jaeger
[ -x "$jaeger" ] || { echo "no Jaeger at $jaeger: run make jaeger" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill "$jpid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/jaeger.yaml" <<'YAML'
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry: {metrics: {level: none}}
extensions:
  jaeger_query:
    storage: {traces: mem}
    http: {endpoint: 127.0.0.1:16686}
    grpc: {endpoint: 127.0.0.1:16685}
  jaeger_storage:
    backends: {mem: {memory: {max_traces: 100000}}}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:4317}
      http: {endpoint: 127.0.0.1:4318}
processors: {batch: {}}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
YAML
"$jaeger" --config "$tmp/jaeger.yaml" > "$tmp/jaeger.log" 2>&1 &
jpid=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:16686/api/services >/dev/null && break; sleep 0.2; done
go build -o "$tmp/" ./cmd/ctxwatch
go build -trimpath -o "$tmp/" ./examples/otelservice
OTEL_METRICS_EXPORTER=none "$tmp/ctxwatch" --otlp-endpoint http://127.0.0.1:4317 --otlp-protocol grpc -- \
	env OTEL_SERVICE_NAME=otelservice OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
	"$tmp/otelservice" > "$tmp/run.txt"
sleep 2
python3 - "$tmp/trace.txt" <<'PY'
import json, sys, urllib.request
q = "http://127.0.0.1:16686/api/traces"
data = json.load(urllib.request.urlopen(q + "?service=otelservice&limit=100"))["data"]
# A request made with a traceparent whose goroutine lost the trace.
tr = next(t for t in data if {"client", "trace break: new-root"} <= {s["operationName"] for s in t["spans"]})
tid = tr["traceID"]
out = []
line = lambda i, s: out.append("  " * i + s)
refs = lambda s: ", ".join('{"refType": "%s", "spanID": "%s"%s}' % (r["refType"], r["spanID"],
    "" if r["traceID"] == tid else ', "traceID": "%s"' % r["traceID"]) for r in s["references"])
line(0, "GET /api/traces/%s   Jaeger v2 query API, abridged (the UI is not in Jaeger's Go module)" % tid)
line(0, "")
line(0, '{"data": [{"traceID": "%s", "spans": [' % tid)
brk = next(s for s in tr["spans"] if s["operationName"].startswith("trace break"))
line(1, "{")
for k in ("spanID", "operationName", "startTime", "duration", "processID"):
    line(2, '"%s": %s,' % (k, json.dumps(brk[k])))
line(2, '"references": [%s],' % refs(brk))
line(2, '"tags": [')
for t in brk["tags"]:
    v = t["value"]
    if t["key"] == "ctxwatch.spawn.stack":
        v = json.loads(v)[:1] + ["..."]
    line(3, json.dumps({"key": t["key"], "value": v}) + ",")
line(2, "]},")
for s in sorted(tr["spans"], key=lambda s: s["startTime"]):
    if s is not brk:
        line(1, '{"spanID": "%s", "operationName": %s, "startTime": %d, "duration": %d, "processID": "%s", "references": [%s], "tags": [... %d tags]},'
             % (s["spanID"], json.dumps(s["operationName"]), s["startTime"], s["duration"], s["processID"], refs(s), len(s["tags"])))
line(0, "],")
line(0, '"processes": {')
for pid, p in tr["processes"].items():
    line(1, '"%s": {"serviceName": %s, "tags": {%s}},' % (pid, json.dumps(p["serviceName"]),
         ", ".join('"%s": %s' % (t["key"], json.dumps(t["value"])) for t in p["tags"])))
line(0, "}}]}")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
	--disable-sync --no-first-run --user-data-dir="$tmp/chromium" --screenshot="$PWD/docs/jaeger-break.png" \
	--window-size=1400,900 "file://$tmp/trace.txt"
