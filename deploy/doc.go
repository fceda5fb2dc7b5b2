// Package deploy holds no code. Its tests check what is beside it: the
// Kubernetes manifests (daemonset.yaml), the Helm chart (helm/ctxwatch),
// the image's Dockerfile and the Grafana dashboard (grafana/); as root,
// TestContainer runs the image in Podman as the DaemonSet says. It is a
// module of its own so that the Kubernetes, Helm, Grafana and PromQL
// libraries the tests decode, render and parse with stay out of ctxwatch's
// go.mod.
package deploy
