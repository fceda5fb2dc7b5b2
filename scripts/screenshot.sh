#!/usr/bin/env bash
# Remakes docs/report.png: the HTML report page of make demo's examples
# (otelhttp, then middleware with its --trace-key), built as make demo
# builds them (-trimpath), shown in headless Chromium (Debian: apt-get
# install chromium). Each runs under ctxwatch with --html and --format json;
# their JSON lines go on one page with ctxwatch report, as the two cannot
# share a watch (otelhttp has no main.traceKey). Source lines come from
# this tree (--source .): -trimpath names files by module path. Needs root
# (ctxwatch).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "no chromium: apt-get install chromium" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/" ./cmd/ctxwatch
go build -trimpath -o "$tmp/" ./examples/otelhttp ./examples/middleware
watch() { # NAME [FLAGS]: a page and JSON lines of one example
	local name=$1
	shift
	"$tmp/ctxwatch" --format json --output "$tmp/$name.json" --html "$tmp/$name.html" --source . "$@" -- "$tmp/$name"
	[ -s "$tmp/$name.html" ] || { echo "ctxwatch --html wrote no page for $name" >&2; exit 1; }
}
watch otelhttp
watch middleware --trace-key type=main.traceKey
cat "$tmp/otelhttp.json" "$tmp/middleware.json" > "$tmp/demo.json"
"$tmp/ctxwatch" report --html "$tmp/demo.html" --source . "$tmp/demo.json"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
	--disable-component-update --disable-sync --user-data-dir="$tmp/chromium" --hide-scrollbars \
	--screenshot="$PWD/docs/report.png" --window-size=1280,1600 "file://$tmp/demo.html" 2>"$tmp/chromium.log" ||
	{ cat "$tmp/chromium.log" >&2; exit 1; }
echo "wrote docs/report.png"
