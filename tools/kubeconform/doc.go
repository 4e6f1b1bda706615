// Package kubeconform validates deploy/kubernetes/*.yaml with kubeconform
// (github.com/yannh/kubeconform), offline. kubeconform fetches its JSON
// schemas over the network, which CI cannot reach, so the schemas are made
// here instead: those of the built-in kinds are generated, in the test, by
// reflecting the Go types of the Kubernetes API release this module
// requires (k8s.io/api), strict (an unknown field is an error); the KEDA
// ScaledObject schema is written by hand in testdata/. It is a module of
// its own so that its dependencies stay out of pyoco's.
package kubeconform
