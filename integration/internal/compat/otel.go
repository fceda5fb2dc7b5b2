package compat

import "fmt"

// OTel is a release of OpenTelemetry Go to build the OTel examples
// (otelspans, otelhttp) against with a toolchain older than go.mod's,
// whose OTel SDK (and contrib otelhttp) need the newest Go.
type OTel struct {
	// SDK is the version of go.opentelemetry.io/otel, otel/sdk and
	// otel/trace, which are released together.
	SDK string
	// HTTP is the release of contrib's otelhttp made with SDK: its go.mod
	// requires otel at exactly SDK (each contrib release pairs with one
	// otel release), so the build gets no newer otel than SDK.
	HTTP string
	// GoMinor is the oldest Go minor version that builds the release.
	GoMinor int
}

// OTelReleases are the releases to build the OTel examples against, newest
// first. Only SDK minors of ctxwatch's layout table (internal/layout) are
// used: a stripped target (no DWARF) is watched through that table only,
// so a release not in it would leave the stripped cell untested. For each
// toolchain the newest of them that it builds is used:
//
//   - v1.47 (go.mod's) needs Go 1.26;
//   - v1.40.0 and otelhttp v0.65.0 declare go 1.24.0: Go 1.24 and 1.25;
//   - v1.30.0 and otelhttp v0.55.0 declare go 1.22: Go 1.22 and 1.23;
//   - v1.24.0 and otelhttp v0.49.0 declare go 1.20: Go 1.20 and 1.21;
//   - v1.20.0 and otelhttp v0.46.0 declare go 1.20 too, but build with Go
//     1.19: before Go 1.21 the go directive is advisory (the go command
//     builds the module and names the directive only if compiling fails),
//     and v1.20.0 uses nothing newer than Go 1.19 (atomic.Pointer is the
//     newest). It is the only table release the matrix runs for Go 1.19,
//     and the only toolchain that runs the v1.20 entry of the table.
//
// Go 1.17 and 1.18 build none: v1.20.0, the oldest release of the table,
// uses atomic.Pointer (Go 1.19; with 1.18: "undefined: atomic.Pointer"),
// and with 1.17 also strings.Cut and, in go-logr, any (Go 1.18). Their OTel
// examples stay not applicable.
var OTelReleases = []OTel{
	{SDK: "v1.40.0", HTTP: "v0.65.0", GoMinor: 24},
	{SDK: "v1.30.0", HTTP: "v0.55.0", GoMinor: 22},
	{SDK: "v1.24.0", HTTP: "v0.49.0", GoMinor: 20},
	{SDK: "v1.20.0", HTTP: "v0.46.0", GoMinor: 19},
}

// OTelFor returns the newest release of OTelReleases that a toolchain of Go
// minor version goMinor builds; false if it builds none.
func OTelFor(goMinor int) (OTel, bool) {
	for _, r := range OTelReleases {
		if goMinor >= r.GoMinor {
			return r, true
		}
	}
	return OTel{}, false
}

// Require returns the go.mod require block for the release. The other
// modules (otel/metric, go-logr, x/sys, httpsnoop, ...) come at the
// versions the release requires, added by the go command (-mod=mod).
func (r OTel) Require() string {
	return fmt.Sprintf("require (\n"+
		"\tgo.opentelemetry.io/contrib/instrumentation/net/http/otelhttp %s\n"+
		"\tgo.opentelemetry.io/otel %s\n"+
		"\tgo.opentelemetry.io/otel/sdk %s\n"+
		"\tgo.opentelemetry.io/otel/trace %s\n"+
		")\n", r.HTTP, r.SDK, r.SDK, r.SDK)
}
