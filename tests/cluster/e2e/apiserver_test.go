package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
)

// A CRD's OpenAPI schema and CEL rules are enforced by the API server, and server-side apply
// records field managers.
func TestCRDValidationCELAndServerSideApply(t *testing.T) {
	t.Parallel()
	cfg := restConfig(t)
	ext, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, client(t))
	group := "e2e" + strings.TrimPrefix(ns, "e2e-") + ".localkube.test"
	group = strings.ReplaceAll(group, "-", "")
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {
							Type: "object",
							Properties: map[string]apiextensionsv1.JSONSchemaProps{
								"min":   {Type: "integer", Minimum: ptr.To(1.0)},
								"max":   {Type: "integer"},
								"label": {Type: "string"},
							},
							XValidations: apiextensionsv1.ValidationRules{{Rule: "self.min <= self.max", Message: "min must not exceed max"}},
						},
					},
				}},
			}},
		},
	}
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx(t), crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx(t), crd.Name, metav1.DeleteOptions{})
	})
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}
	widget := func(name string, min, max int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": "Widget",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"min": min, "max": max},
		}}
	}
	// Wait until the new resource is served.
	eventually(t, 30*time.Second, func() (bool, string) {
		_, err := dyn.Resource(gvr).Namespace(ns).List(ctx(t), metav1.ListOptions{})
		return err == nil, fmt.Sprintf("%v", err)
	})

	_, err = dyn.Resource(gvr).Namespace(ns).Create(ctx(t), widget("bad-cel", 5, 2), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "min must not exceed max") {
		t.Errorf("CEL rule: got %v, want Invalid naming the rule's message", err)
	}
	_, err = dyn.Resource(gvr).Namespace(ns).Create(ctx(t), widget("bad-min", 0, 2), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.min") {
		t.Errorf("schema minimum: got %v, want Invalid naming spec.min", err)
	}

	// Server-side apply by two managers: a conflict on a field owned by the other one.
	apply := func(manager string, obj *unstructured.Unstructured, force bool) error {
		b, err := obj.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		_, err = dyn.Resource(gvr).Namespace(ns).Patch(ctx(t), obj.GetName(), types.ApplyPatchType, b,
			metav1.PatchOptions{FieldManager: manager, Force: ptr.To(force)})
		return err
	}
	if err := apply("first", widget("ok", 1, 3), false); err != nil {
		t.Fatal(err)
	}
	if err := apply("second", widget("ok", 1, 4), false); !apierrors.IsConflict(err) {
		t.Errorf("apply of a field owned by another manager: got %v, want a conflict", err)
	}
	if err := apply("second", widget("ok", 1, 4), true); err != nil {
		t.Fatal(err)
	}
	got, err := dyn.Resource(gvr).Namespace(ns).Get(ctx(t), "ok", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managers := map[string]bool{}
	for _, m := range got.GetManagedFields() {
		managers[m.Manager] = true
	}
	if max, _, _ := unstructured.NestedInt64(got.Object, "spec", "max"); max != 4 || !managers["first"] || !managers["second"] {
		t.Errorf("after forced apply: max=%d managers=%v", max, managers)
	}
}

// helm (installed by scripts/install-kube-tools.sh) installs a chart whose kubeVersion
// constraint needs the server's real version, and --wait sees its Deployment ready.
func TestHelmInstall(t *testing.T) {
	t.Parallel()
	helm := filepath.Join(repoRoot(t), "target", "tools", "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("helm not installed (make kube-tools): %v", err)
	}
	c := client(t)
	ns := namespace(t, c)
	chart := t.TempDir()
	write := func(path, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(chart, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(chart, path), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.1.0\nkubeVersion: \">=1.36.0-0 <1.37.0-0\"\n")
	write("templates/deploy.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: `+testImage+`
        env:
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: LK_LISTEN, value: "$(POD_IP):8080"}
        readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 1}
`)
	kubeconfig := filepath.Join(repoRoot(t), "target", "localkube", "kubeconfig")
	if k := os.Getenv("LOCALKUBE_KUBECONFIG"); k != "" {
		kubeconfig = k
	}
	cmd := exec.Command(helm, "install", "demo", chart, "--namespace", ns, "--wait", "--timeout", "90s", "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	d, err := c.AppsV1().Deployments(ns).Get(ctx(t), "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas != 2 {
		t.Fatalf("after helm --wait: %d ready replicas, want 2\n%s", d.Status.ReadyReplicas, out)
	}
}
