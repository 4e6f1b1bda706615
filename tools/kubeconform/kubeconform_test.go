package kubeconform

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"
	"github.com/stretchr/testify/require"
	"github.com/yannh/kubeconform/pkg/validator"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// manifestsDir holds the manifests under test.
const manifestsDir = "../../deploy/kubernetes"

// kinds are the built-in kinds the manifests may use, by kubeconform's
// schema file name ({{ .ResourceKind }}{{ .KindSuffix }}.json).
var kinds = map[string]any{
	"namespace-v1":             corev1.Namespace{},
	"configmap-v1":             corev1.ConfigMap{},
	"service-v1":               corev1.Service{},
	"secret-v1":                corev1.Secret{},
	"deployment-apps-v1":       appsv1.Deployment{},
	"statefulset-apps-v1":      appsv1.StatefulSet{},
	"serviceaccount-v1":        corev1.ServiceAccount{},
	"persistentvolumeclaim-v1": corev1.PersistentVolumeClaim{},
}

// schemaFor reflects t into a strict JSON schema. The API's hand-encoded
// types get the JSON they accept.
func schemaFor(t any) *jsonschema.Schema {
	r := &jsonschema.Reflector{
		// Only unknown fields and wrong types are errors: json tags
		// without omitempty do not make a field required in the API.
		RequiredFromJSONSchemaTags: true,
		Mapper: func(rt reflect.Type) *jsonschema.Schema {
			switch rt {
			case reflect.TypeFor[resource.Quantity]():
				return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Type: "string", Pattern: `^[+-]?[0-9.]+([eE][+-]?[0-9]+|[numkMGTPE]i?|Ki)?$`}, {Type: "number"}}}
			case reflect.TypeFor[intstr.IntOrString]():
				return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Type: "string"}, {Type: "integer"}}}
			case reflect.TypeFor[metav1.Time](), reflect.TypeFor[metav1.MicroTime]():
				return &jsonschema.Schema{Type: "string", Format: "date-time"}
			case reflect.TypeFor[metav1.Duration]():
				return &jsonschema.Schema{Type: "string"}
			case reflect.TypeFor[runtime.RawExtension]():
				return &jsonschema.Schema{Type: "object"}
			}
			return nil
		},
	}
	return r.Reflect(t)
}

// schemaDir writes the schemas kubeconform reads and returns its
// -schema-location template.
func schemaDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range kinds {
		b, err := json.Marshal(schemaFor(v))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644))
	}
	keda, err := os.ReadFile("testdata/scaledobject-keda-v1alpha1.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "scaledobject-keda-v1alpha1.json"), keda, 0o644))
	return filepath.Join(dir, "{{ .ResourceKind }}{{ .KindSuffix }}.json")
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
