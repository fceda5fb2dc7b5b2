package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// manifest is the Kubernetes objects of one YAML stream, each decoded
// strictly into its API type.
type manifest struct {
	serviceAccounts []corev1.ServiceAccount
	daemonSets      []appsv1.DaemonSet
}

// decodeManifest decodes every document of a YAML stream as the API server
// would with strict field validation: a field its type does not have, a
// field named in the wrong case and a duplicate field are errors. Any kind
// but ServiceAccount and DaemonSet is an error too: the agent needs no RBAC
// object, no Service, no ConfigMap.
func decodeManifest(data []byte) (manifest, error) {
	var m manifest
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return m, fmt.Errorf("read document %d: %w", i, err)
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return m, fmt.Errorf("document %d: %w", i, err)
		}
		if string(bytes.TrimSpace(j)) == "null" {
			continue // comments only
		}
		var tm metav1.TypeMeta
		if err := k8sjson.UnmarshalCaseSensitivePreserveInts(j, &tm); err != nil {
			return m, fmt.Errorf("document %d: read kind: %w", i, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ServiceAccount":
			m.serviceAccounts = append(m.serviceAccounts, corev1.ServiceAccount{})
			obj = &m.serviceAccounts[len(m.serviceAccounts)-1]
		case "apps/v1 DaemonSet":
			m.daemonSets = append(m.daemonSets, appsv1.DaemonSet{})
			obj = &m.daemonSets[len(m.daemonSets)-1]
		default:
			if strings.Contains(tm.Kind, "Role") {
				return m, fmt.Errorf("document %d: %s %s: ctxwatch needs no RBAC object", i, tm.APIVersion, tm.Kind)
			}
			return m, fmt.Errorf("document %d: unexpected %q %q", i, tm.APIVersion, tm.Kind)
		}
		// encoding/json matches field names case-insensitively (hostPid
		// would set HostPID); the API server, like sigs.k8s.io/json,
		// does not.
		strict, err := k8sjson.UnmarshalStrict(j, obj, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
		if err != nil {
			return m, fmt.Errorf("document %d, %s: %w", i, tm.Kind, err)
		}
		if err := errors.Join(strict...); err != nil {
			return m, fmt.Errorf("document %d, %s: %w", i, tm.Kind, err)
		}
	}
}

// The capabilities the agent holds, and only these: see the comments in
// daemonset.yaml for what each is for.
var wantCaps = []string{"SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"}

// agentProblems lists where m breaks a rule that every rendering of the
// agent must keep, whatever the values: least privilege, the downward API
// variables, resources, the command line, the probes.
func agentProblems(m manifest) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if len(m.serviceAccounts) != 1 || len(m.daemonSets) != 1 {
		bad("want one ServiceAccount and one DaemonSet, have %d and %d", len(m.serviceAccounts), len(m.daemonSets))
		return p
	}
	sa, ds := m.serviceAccounts[0], m.daemonSets[0]
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		bad("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
	}
	if ds.Spec.Selector == nil {
		bad("DaemonSet has no selector")
	} else if sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector); err != nil {
		bad("DaemonSet selector: %v", err)
	} else if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		bad("DaemonSet selector %v does not match its pods' labels %v", sel, ds.Spec.Template.Labels)
	}

	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		bad("pod runs as ServiceAccount %q, not the manifest's %q", pod.ServiceAccountName, sa.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		bad("pod: automountServiceAccountToken is not false")
	}
	if !pod.HostPID {
		bad("hostPID is not true: the agent would see its own pod's processes only")
	}
	if pod.HostNetwork || pod.HostIPC {
		bad("hostNetwork %v, hostIPC %v: neither is needed", pod.HostNetwork, pod.HostIPC)
	}
	if len(pod.Volumes) != 0 {
		bad("volumes %v: the agent needs no mount beyond hostPID's /proc", pod.Volumes)
	}
	if psc := pod.SecurityContext; psc != nil {
		if psc.RunAsNonRoot != nil && *psc.RunAsNonRoot || psc.RunAsUser != nil && *psc.RunAsUser != 0 {
			bad("pod securityContext runs as non-root: added capabilities would not take effect")
		}
	}
	if len(pod.InitContainers) != 0 || len(pod.Containers) != 1 {
		bad("want one container and no init container, have %d and %d", len(pod.Containers), len(pod.InitContainers))
		return p
	}

	c := pod.Containers[0]
	if len(c.VolumeMounts) != 0 {
		bad("volumeMounts %v: none is needed", c.VolumeMounts)
	}
	p = append(p, securityContextProblems(c.SecurityContext)...)
	p = append(p, envProblems(c.Env)...)
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		switch {
		case !okReq || !okLim:
			bad("resources: %s request and limit must both be set", r)
		case req.Sign() <= 0 || req.Cmp(lim) > 0:
			bad("resources: %s request %s, limit %s", r, req.String(), lim.String())
		}
	}
	if !slices.Equal(c.Command, []string{"/ctxwatch"}) {
		bad("command %q, want [/ctxwatch]", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "node" {
		bad("args %q do not start with node", c.Args)
	}
	p = append(p, metricsProblems(ds.Spec.Template, c)...)
	return p
}

func securityContextProblems(sc *corev1.SecurityContext) []string {
	if sc == nil {
		return []string{"container has no securityContext"}
	}
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if sc.Privileged != nil && *sc.Privileged {
		bad("privileged: true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("readOnlyRootFilesystem is not true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		bad("runAsUser is not 0: Kubernetes gives added capabilities to root only")
	}
	if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
		bad("runAsNonRoot: true, but the agent runs as uid 0")
	}
	if sc.Capabilities == nil {
		bad("no capabilities: want drop ALL, add %v", wantCaps)
	} else {
		if drop := capNames(sc.Capabilities.Drop); !slices.Equal(drop, []string{"ALL"}) {
			bad("capabilities drop %v, want [ALL]", drop)
		}
		add := capNames(sc.Capabilities.Add)
		if !slices.Equal(slices.Compact(slices.Sorted(slices.Values(add))), wantCaps) || len(add) != len(wantCaps) {
			bad("capabilities add %v, want exactly %v", add, wantCaps)
		}
	}
	// The reasons are in daemonset.yaml: RuntimeDefault seccomp allows
	// bpf() and perf_event_open() with CAP_SYS_ADMIN, and the default
	// AppArmor profile denies reading the node's own processes.
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("seccompProfile %v, want RuntimeDefault", sc.SeccompProfile)
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		bad("appArmorProfile %v, want Unconfined", sc.AppArmorProfile)
	}
	return p
}

func capNames(cs []corev1.Capability) []string {
	var s []string
	for _, c := range cs {
		s = append(s, string(c))
	}
	return s
}

// varRef is a $(NAME) reference in an environment value, which Kubernetes
// expands only if NAME is defined earlier in the list.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func envProblems(env []corev1.EnvVar) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	defined := map[string]bool{}
	byName := map[string]corev1.EnvVar{}
	for _, e := range env {
		if _, dup := byName[e.Name]; dup {
			bad("env %s set twice", e.Name)
		}
		for _, ref := range varRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[ref[1]] {
				bad("env %s uses $(%s) before it is defined: Kubernetes would pass it literally", e.Name, ref[1])
			}
		}
		defined[e.Name] = true
		byName[e.Name] = e
	}
	for name, path := range map[string]string{"NODE_NAME": "spec.nodeName", "HOST_IP": "status.hostIP"} {
		e, ok := byName[name]
		if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			bad("env %s does not come from the downward API's %s", name, path)
		}
	}
	if e, ok := byName["OTEL_EXPORTER_OTLP_ENDPOINT"]; ok {
		u, err := url.Parse(varRef.ReplaceAllString(e.Value, "192.0.2.1"))
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			bad("OTEL_EXPORTER_OTLP_ENDPOINT %q is not an http(s) URL", e.Value)
		}
	}
	if e, ok := byName["OTEL_EXPORTER_OTLP_PROTOCOL"]; ok && e.Value != "grpc" && e.Value != "http/protobuf" {
		bad("OTEL_EXPORTER_OTLP_PROTOCOL %q is neither grpc nor http/protobuf", e.Value)
	}
	return p
}

// metricsProblems checks that /metrics and /healthz are served where the
// container port, the probes and the scrape annotations say.
func metricsProblems(tmpl corev1.PodTemplateSpec, c corev1.Container) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	var port *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "metrics" {
			port = &c.Ports[i]
		}
	}
	if port == nil {
		return []string{"no container port named metrics"}
	}
	if addr := fmt.Sprintf("--metrics-addr=:%d", port.ContainerPort); !slices.Contains(c.Args, addr) {
		bad("args %q lack %s, the metrics port", c.Args, addr)
	}
	for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		switch {
		case probe == nil || probe.HTTPGet == nil:
			bad("no %s probe over HTTP", name)
		case probe.HTTPGet.Path != "/healthz":
			bad("%s probe asks %s, not /healthz", name, probe.HTTPGet.Path)
		case probe.HTTPGet.Port.String() != port.Name && probe.HTTPGet.Port.IntValue() != int(port.ContainerPort):
			bad("%s probe asks port %s, not the metrics port %d", name, probe.HTTPGet.Port.String(), port.ContainerPort)
		}
	}
	if tmpl.Annotations["prometheus.io/scrape"] == "true" && tmpl.Annotations["prometheus.io/port"] != fmt.Sprint(port.ContainerPort) {
		bad("prometheus.io/port %q is not the metrics port %d", tmpl.Annotations["prometheus.io/port"], port.ContainerPort)
	}
	return p
}

// config is what a rendering is asked to set: the defaults, or a values
// file's.
type config struct {
	namespace    string
	image        string
	pullPolicy   corev1.PullPolicy
	args         []string
	otlp         map[string]string // OTEL_* variables and their values
	annotations  map[string]string
	nodeSelector map[string]string
	tolerations  []corev1.Toleration
	requests     map[corev1.ResourceName]string
	limits       map[corev1.ResourceName]string
}

// defaults is what daemonset.yaml sets and what the chart renders with its
// default values.
var defaults = config{
	image:      "ctxwatch:latest",
	pullPolicy: corev1.PullIfNotPresent,
	args:       []string{"node", "--metrics-addr=:9464", "--max-procs=64", "--overhead-budget=5"},
	otlp: map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://$(HOST_IP):4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	},
	annotations: map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   "9464",
		"prometheus.io/path":   "/metrics",
	},
	nodeSelector: map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
	tolerations:  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
	requests:     map[corev1.ResourceName]string{corev1.ResourceCPU: "50m", corev1.ResourceMemory: "128Mi"},
	limits:       map[corev1.ResourceName]string{corev1.ResourceCPU: "500m", corev1.ResourceMemory: "256Mi"},
}

// configProblems lists where m does not carry what want asks. m must have
// passed agentProblems.
func configProblems(m manifest, want config) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	sa, ds := m.serviceAccounts[0], m.daemonSets[0]
	for _, meta := range []metav1.ObjectMeta{sa.ObjectMeta, ds.ObjectMeta} {
		if meta.Namespace != want.namespace {
			bad("%s is in namespace %q, want %q", meta.Name, meta.Namespace, want.namespace)
		}
	}
	tmpl := ds.Spec.Template
	c := tmpl.Spec.Containers[0]
	if c.Image != want.image || c.ImagePullPolicy != want.pullPolicy {
		bad("image %s (%s), want %s (%s)", c.Image, c.ImagePullPolicy, want.image, want.pullPolicy)
	}
	if !slices.Equal(c.Args, want.args) {
		bad("args\n\t%q\nwant\n\t%q", c.Args, want.args)
	}
	otlp := map[string]string{}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "OTEL_") {
			otlp[e.Name] = e.Value
		}
	}
	if !maps.Equal(otlp, want.otlp) {
		bad("OTLP environment %v, want %v", otlp, want.otlp)
	}
	if !maps.Equal(tmpl.Annotations, want.annotations) {
		bad("pod annotations %v, want %v", tmpl.Annotations, want.annotations)
	}
	if !maps.Equal(tmpl.Spec.NodeSelector, want.nodeSelector) {
		bad("nodeSelector %v, want %v", tmpl.Spec.NodeSelector, want.nodeSelector)
	}
	if !equality.Semantic.DeepEqual(tmpl.Spec.Tolerations, want.tolerations) {
		bad("tolerations %v, want %v", tmpl.Spec.Tolerations, want.tolerations)
	}
	for _, r := range []struct {
		what      string
		got, want map[corev1.ResourceName]string
	}{
		{"requests", quantities(c.Resources.Requests), want.requests},
		{"limits", quantities(c.Resources.Limits), want.limits},
	} {
		if !maps.Equal(r.got, r.want) {
			bad("resources %s %v, want %v", r.what, r.got, r.want)
		}
	}
	return p
}

func quantities(l corev1.ResourceList) map[corev1.ResourceName]string {
	m := map[corev1.ResourceName]string{}
	for name, q := range l {
		m[name] = q.String()
	}
	return m
}

func readManifest(t *testing.T, path string) manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest(data)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return m
}

func reportProblems(t *testing.T, what string, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Errorf("%s: %s", what, p)
	}
}

func TestManifest(t *testing.T) {
	m := readManifest(t, "daemonset.yaml")
	if p := agentProblems(m); len(p) > 0 {
		reportProblems(t, "daemonset.yaml", p)
		return
	}
	// No namespace: kubectl apply -n NS puts it where the user says.
	reportProblems(t, "daemonset.yaml", configProblems(m, defaults))
}

// TestRulesCatchBrokenManifests breaks daemonset.yaml one rule at a time and
// checks that the decoding or the rules above say so: a rule that cannot
// fail proves nothing.
func TestRulesCatchBrokenManifests(t *testing.T) {
	orig, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edits := []struct {
		name, old, new string
	}{
		{"hostPID in the wrong case", "hostPID: true", "hostPid: true"},
		{"unknown field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
		{"duplicate field", "hostPID: true", "hostPID: true\n      hostPID: true"},
		{"a ClusterRole", "---\napiVersion: apps/v1", "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ctxwatch\nrules: []\n---\napiVersion: apps/v1"},
		{"a RoleBinding", "---\napiVersion: apps/v1", "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: ctxwatch\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: x}\n---\napiVersion: apps/v1"},
	}
	for _, e := range edits {
		t.Run("decode/"+e.name, func(t *testing.T) {
			broken := strings.Replace(string(orig), e.old, e.new, 1)
			if broken == string(orig) {
				t.Fatalf("%q is not in daemonset.yaml", e.old)
			}
			if _, err := decodeManifest([]byte(broken)); err == nil {
				t.Errorf("decoded without error")
			} else {
				t.Log(err)
			}
		})
	}

	breaks := []struct {
		name   string
		mutate func(sa *corev1.ServiceAccount, pod *corev1.PodSpec, c *corev1.Container)
	}{
		{"not hostPID", func(_ *corev1.ServiceAccount, pod *corev1.PodSpec, _ *corev1.Container) { pod.HostPID = false }},
		{"privileged", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.Privileged = new(true)
		}},
		{"NET_ADMIN added", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "NET_ADMIN")
		}},
		{"SYS_RESOURCE missing", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.Capabilities.Add = c.SecurityContext.Capabilities.Add[:2]
		}},
		{"SYS_PTRACE twice", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "SYS_PTRACE")
		}},
		{"nothing dropped", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.Capabilities.Drop = nil
		}},
		{"privilege escalation unset", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.AllowPrivilegeEscalation = nil
		}},
		{"writable root", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.ReadOnlyRootFilesystem = new(false)
		}},
		{"non-root user", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.RunAsUser = new(int64(65532))
		}},
		{"Unconfined seccomp", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.SeccompProfile.Type = corev1.SeccompProfileTypeUnconfined
		}},
		{"ServiceAccount token mounted", func(sa *corev1.ServiceAccount, _ *corev1.PodSpec, _ *corev1.Container) {
			sa.AutomountServiceAccountToken = new(true)
		}},
		{"pod token unset", func(_ *corev1.ServiceAccount, pod *corev1.PodSpec, _ *corev1.Container) {
			pod.AutomountServiceAccountToken = nil
		}},
		{"other ServiceAccount", func(_ *corev1.ServiceAccount, pod *corev1.PodSpec, _ *corev1.Container) {
			pod.ServiceAccountName = "default"
		}},
		{"host path", func(_ *corev1.ServiceAccount, pod *corev1.PodSpec, _ *corev1.Container) {
			pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "sys", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/sys"}}})
		}},
		{"NODE_NAME from the pod name", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.Env[0].ValueFrom.FieldRef.FieldPath = "metadata.name"
		}},
		{"HOST_IP after its use", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.Env = append([]corev1.EnvVar{c.Env[0]}, append(c.Env[2:], c.Env[1])...)
		}},
		{"no memory limit", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			delete(c.Resources.Limits, corev1.ResourceMemory)
		}},
		{"request over limit", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
		}},
		{"args without node", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) { c.Args = c.Args[1:] }},
		{"metrics on another port", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) {
			c.Ports[0].ContainerPort = 9000
		}},
		{"no readiness probe", func(_ *corev1.ServiceAccount, _ *corev1.PodSpec, c *corev1.Container) { c.ReadinessProbe = nil }},
	}
	for _, b := range breaks {
		t.Run(b.name, func(t *testing.T) {
			m, err := decodeManifest(orig)
			if err != nil {
				t.Fatal(err)
			}
			pod := &m.daemonSets[0].Spec.Template.Spec
			b.mutate(&m.serviceAccounts[0], pod, &pod.Containers[0])
			p := agentProblems(m)
			if len(p) == 0 {
				t.Errorf("no rule broken")
			}
			t.Log(p)
		})
	}
}
