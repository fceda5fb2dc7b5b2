package agent

import (
	"bytes"
	"fmt"
	"os"
)

// environValue returns variable key of process pid's environment as it
// was at exec, or "" when unset or unreadable: the process's own
// OTEL_SERVICE_NAME names its break spans' service.
func environValue(pid int, key string) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	prefix := []byte(key + "=")
	for kv := range bytes.SplitSeq(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v)
		}
	}
	return ""
}
