//go:build tools

// The cluster lab's other Kubernetes parts, built by tests/scripts/build-kube-env.sh from the same
// release as kube-env (one replace block, one go.sum): this file keeps their dependencies in go.mod.
package main

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
