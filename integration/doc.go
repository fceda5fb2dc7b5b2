// Package integration runs ctxwatch, as root with real uprobes, against the
// programs in examples/ and checks its verdicts against the expectations
// written into their sources as "want:" comments, and against the counts
// the programs report about themselves.
package integration
