package agent

import "testing"

func TestNodeSelection(t *testing.T) {
	n := &Node{Match: []string{"api-*", "worker"}, Exclude: []string{"api-debug*"}}
	for name, want := range map[string]bool{
		"api-gateway": true, "worker": true, "api-debug-1": false, "workers": false, "ctxwatch": false,
	} {
		if got := n.Selected(name); got != want {
			t.Errorf("Selected(%q) = %v, want %v", name, got, want)
		}
	}
	all := &Node{Exclude: []string{"kube*"}}
	if !all.Selected("api") || all.Selected("kubelet") {
		t.Error("with no --match, every program but the excluded ones is selected")
	}
}
