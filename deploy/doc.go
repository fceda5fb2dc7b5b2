// Package deploy holds no code. Its tests check what is beside it: the
// Kubernetes manifests (daemonset.yaml), the Helm chart (helm/ctxwatch) and
// the image's Dockerfile. It is a module of its own so that the Kubernetes
// and Helm libraries the tests decode and render with stay out of
// ctxwatch's go.mod.
package deploy
