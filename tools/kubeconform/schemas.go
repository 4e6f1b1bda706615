package kubeconform

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/invopop/jsonschema"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// SchemaLocation is kubeconform's -schema-location template for a
// directory written by [WriteSchemas].
const SchemaLocation = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

//go:embed testdata/scaledobject-keda-v1alpha1.json
var kedaScaledObject []byte

// WriteSchemas writes into dir the strict JSON schema of every kind the
// manifests may use, named as kubeconform looks them up: those of the
// built-in kinds reflected from the k8s.io/api Go types, KEDA's
// ScaledObject from testdata.
func WriteSchemas(dir string) error {
	for name, v := range kinds {
		b, err := json.Marshal(schemaFor(v))
		if err != nil {
			return fmt.Errorf("schema of %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "scaledobject-keda-v1alpha1.json"), kedaScaledObject, 0o644)
}

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
