package kubeconform

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/yannh/kubeconform/pkg/validator"
)

// manifestsDir holds the manifests under test.
const manifestsDir = "../../deploy/kubernetes"

// schemaDir writes the schemas kubeconform reads and returns its
// -schema-location template.
func schemaDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, WriteSchemas(dir))
	return filepath.Join(dir, SchemaLocation)
}

func newValidator(t *testing.T) validator.Validator {
	t.Helper()
	v, err := validator.New([]string{schemaDir(t)}, validator.Opts{Strict: true})
	require.NoError(t, err)
	return v
}

// TestManifests: every document of deploy/kubernetes/*.yaml is valid, none
// skipped for want of a schema, and the set has what a deployment needs.
func TestManifests(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	files, err := filepath.Glob(filepath.Join(manifestsDir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	seen := map[string]bool{}
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		for _, res := range v.Validate(f, fh) { // closes fh
			if res.Status == validator.Empty {
				continue
			}
			sig, _ := res.Resource.Signature()
			name := f
			if sig != nil {
				name = f + ": " + sig.Kind + "/" + sig.Name
				seen[sig.Kind+"/"+sig.Name] = true
			}
			require.Equal(t, validator.Valid, res.Status, "%s: %v %v", name, res.Err, res.ValidationErrors)
		}
	}
	for _, want := range []string{"Deployment/pyoco-server", "Service/pyoco-server", "Deployment/pyoco-worker",
		"StatefulSet/redis", "Service/redis", "ScaledObject/pyoco-worker"} {
		require.True(t, seen[want], "missing %s", want)
	}
}

// TestManifestErrorsCaught: the validator is strict enough to matter.
func TestManifestErrorsCaught(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	for name, doc := range map[string]string{
		"unknown field":     "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n",
		"wrong type":        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: two\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n",
		"bad container key": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80, targetport: 8000}]\n",
		"bad quantity":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i, resources: {requests: {cpu: lots}}}]}}\n",
		"keda number":       "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: w}\n  triggers: [{type: prometheus, metadata: {threshold: 30}}]\n",
		"keda unknown":      "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: w}\n  minReplicas: 0\n  triggers: [{type: prometheus, metadata: {threshold: \"30\"}}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res := v.Validate(name+".yaml", readCloser(doc))
			require.Len(t, res, 1)
			require.Equal(t, validator.Invalid, res[0].Status, "%v %v", res[0].Err, res[0].ValidationErrors)
		})
	}
}

type stringReadCloser struct{ *strings.Reader }

func (stringReadCloser) Close() error { return nil }

func readCloser(s string) stringReadCloser { return stringReadCloser{strings.NewReader(s)} }

// TestKubeconformCLI runs the kubeconform command itself (the module's
// tool) on the manifests, as an operator would, with the generated schemas.
func TestKubeconformCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubeconform")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/yannh/kubeconform/cmd/kubeconform")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	schemas := filepath.Join(dir, "schemas")
	require.NoError(t, os.Mkdir(schemas, 0o755))
	require.NoError(t, WriteSchemas(schemas))
	files, err := filepath.Glob(filepath.Join(manifestsDir, "*.yaml"))
	require.NoError(t, err)
	args := append([]string{"-strict", "-summary", "-output", "json", "-schema-location", filepath.Join(schemas, SchemaLocation)}, files...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "kubeconform:\n%s", out)
	var res struct {
		Summary struct {
			Valid, Invalid, Errors, Skipped int
		} `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	require.Positive(t, res.Summary.Valid, "%s", out)
	require.Zero(t, res.Summary.Invalid+res.Summary.Errors+res.Summary.Skipped, "%s", out)
}
