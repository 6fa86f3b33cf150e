package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func intOrName(s string) intstr.IntOrString { return intstr.FromString(s) }

// The API server reports the version it was built as, so helm's kubeVersion checks work.
func TestServerVersion(t *testing.T) {
	t.Parallel()
	v, err := client(t).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.36.3" || v.Major != "1" || v.Minor != "36" {
		t.Fatalf("server version = %+v, want v1.36.3", v)
	}
}

// The `kubernetes` Service's endpoints name the API server's own port, so that pods reach it at
// the Service's address (up.sh rewrites endpoints a data directory kept from another port).
func TestKubernetesEndpointsNameTheAPIServersPort(t *testing.T) {
	t.Parallel()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(restConfig(t).Host, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := client(t).DiscoveryV1().EndpointSlices("default").List(ctx(t), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Fatal("no EndpointSlice of the kubernetes Service")
	}
	for _, slice := range list.Items {
		for _, p := range slice.Ports {
			if p.Port == nil || fmt.Sprint(*p.Port) != port {
				t.Fatalf("EndpointSlice %s names port %v; the API server listens on %s", slice.Name, p.Port, port)
			}
		}
	}
}

// The node agent registered a Ready node and keeps its Lease fresh.
func TestNodeReadyAndLeaseRenewed(t *testing.T) {
	t.Parallel()
	c := client(t)
	nodes, err := c.CoreV1().Nodes().List(ctx(t), metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes: %v (%d)", err, len(nodes.Items))
	}
	node := nodes.Items[0]
	lease, err := c.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx(t), node.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Spec.RenewTime.Time
	eventually(t, 30*time.Second, func() (bool, string) {
		l, err := c.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx(t), node.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return l.Spec.RenewTime.After(first), fmt.Sprintf("lease renewTime still %v", l.Spec.RenewTime)
	})
}

// A Deployment of the test program reaches its ready replicas (real scheduler, real
// ReplicaSet controller, pods run by the agent on their own pod IPs), and scaling it down
// sends SIGTERM to the processes of the pods it removes.
func TestDeploymentScaleUpAndDown(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	sigDir := signalDir(t)
	d := deployment("web", 3, testContainer(v1.EnvVar{Name: "LK_SIGNAL_DIR", Value: sigDir}))
	withHostDir(&d.Spec.Template.Spec, sigDir)
	if _, err := c.AppsV1().Deployments(ns).Create(ctx(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, ns, "web", 3)

	pods := podsOf(t, c, ns, "web")
	ips := map[string]bool{}
	for _, p := range pods {
		if !podReady(&p) || p.Spec.NodeName == "" || p.Status.PodIP == "" {
			t.Fatalf("pod %s: ready=%v node=%q ip=%q", p.Name, podReady(&p), p.Spec.NodeName, p.Status.PodIP)
		}
		ips[p.Status.PodIP] = true
		if n := len(processesOfPod(p.UID)); n == 0 {
			t.Fatalf("pod %s is ready but no process carries its UID", p.Name)
		}
	}
	if len(ips) != 3 {
		t.Fatalf("pods share IPs: %v", ips)
	}

	scale, err := c.AppsV1().Deployments(ns).GetScale(ctx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 1
	if _, err := c.AppsV1().Deployments(ns).UpdateScale(ctx(t), "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, func() (bool, string) {
		n := len(podsOf(t, c, ns, "web"))
		return n == 1, fmt.Sprintf("%d pods, want 1", n)
	})
	waitDeployment(t, ns, "web", 1)
	left := podsOf(t, c, ns, "web")[0].Name
	removed := 0
	for _, p := range pods {
		if p.Name == left {
			if s := signalsOf(sigDir, p.Name); s != "" {
				t.Errorf("the remaining pod %s got a signal: %q", p.Name, s)
			}
			continue
		}
		removed++
		if s := signalsOf(sigDir, p.Name); !strings.HasPrefix(s, "SIGTERM "+p.Name) {
			t.Errorf("removed pod %s: recorded signals %q, want SIGTERM", p.Name, s)
		}
		if pids := processesOfPod(p.UID); len(pids) != 0 {
			t.Errorf("removed pod %s still has processes %v", p.Name, pids)
		}
	}
	if removed != 2 {
		t.Fatalf("removed %d pods, want 2", removed)
	}
}

func waitDeployment(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	c := client(t)
	eventually(t, 90*time.Second, func() (bool, string) {
		d, err := c.AppsV1().Deployments(ns).Get(ctx(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := d.Status
		return s.ObservedGeneration == d.Generation && s.ReadyReplicas == replicas && s.Replicas == replicas && s.UpdatedReplicas == replicas,
			fmt.Sprintf("deployment status %+v, want %d ready", s, replicas)
	})
}

// Deleting a Deployment garbage-collects its ReplicaSet and pods (the real garbage
// collector), and the pods' processes are stopped.
func TestGarbageCollection(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	sigDir := signalDir(t)
	d := deployment("gc", 1, testContainer(v1.EnvVar{Name: "LK_SIGNAL_DIR", Value: sigDir}))
	withHostDir(&d.Spec.Template.Spec, sigDir)
	if _, err := c.AppsV1().Deployments(ns).Create(ctx(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, ns, "gc", 1)
	pod := podsOf(t, c, ns, "gc")[0]
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "ReplicaSet" {
		t.Fatalf("pod owners: %+v", pod.OwnerReferences)
	}
	// An extra child of our own, owned by the Deployment.
	d, err := c.AppsV1().Deployments(ns).Get(ctx(t), "gc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "child", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
	}}}}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx(t), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := c.AppsV1().Deployments(ns).Delete(ctx(t), "gc", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, func() (bool, string) {
		rs, err := c.AppsV1().ReplicaSets(ns).List(ctx(t), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		_, cmErr := c.CoreV1().ConfigMaps(ns).Get(ctx(t), "child", metav1.GetOptions{})
		pods := podsOf(t, c, ns, "gc")
		return len(rs.Items) == 0 && len(pods) == 0 && apierrors.IsNotFound(cmErr),
			fmt.Sprintf("%d replicasets, %d pods, configmap: %v", len(rs.Items), len(pods), cmErr)
	})
	if s := signalsOf(sigDir, pod.Name); !strings.HasPrefix(s, "SIGTERM") {
		t.Errorf("collected pod %s recorded %q, want SIGTERM", pod.Name, s)
	}
	if pids := processesOfPod(pod.UID); len(pids) != 0 {
		t.Errorf("collected pod still has processes %v", pids)
	}
}

type apiResult struct {
	Verb, Path string
	Code       int
}

// A pod runs with a token of its own service account: what RBAC grants it works, anything
// else is refused with 403.
func TestServiceAccountRBAC(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx(t), &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}
	if _, err := c.RbacV1().Roles(ns).Create(ctx(t), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}},
	}
	if _, err := c.RbacV1().RoleBindings(ns).Create(ctx(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resultDir := signalDir(t)
	resultFile := filepath.Join(resultDir, "result")
	ctr := testContainer(
		v1.EnvVar{Name: "LK_RESULT_FILE", Value: resultFile},
		v1.EnvVar{Name: "LK_API_CHECKS", Value: fmt.Sprintf("GET /api/v1/namespaces/%s/pods;GET /api/v1/namespaces/%s/secrets;GET /api/v1/namespaces/kube-system/pods", ns, ns)},
	)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "rbac"},
		Spec:       v1.PodSpec{ServiceAccountName: "reader", Containers: []v1.Container{ctr}, TerminationGracePeriodSeconds: ptr.To[int64](5)},
	}
	withHostDir(&pod.Spec, resultDir)
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var results []apiResult
	eventually(t, 60*time.Second, func() (bool, string) {
		b, err := os.ReadFile(resultFile)
		if err != nil {
			return false, fmt.Sprintf("no results yet: %v", err)
		}
		results = nil
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r apiResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return false, err.Error()
			}
			results = append(results, r)
		}
		return true, ""
	})
	want := []int{200, 403, 403}
	var got []int
	for _, r := range results {
		got = append(got, r.Code)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("API status codes %v, want %v (%+v)", got, want, results)
	}
}

// Env from values, the downward API, Secrets and ConfigMaps (env and envFrom), $(VAR)
// expansion in env and args; and `kubectl logs` through the agent's kubelet port.
func TestEnvAndLogs(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	if _, err := c.CoreV1().Secrets(ns).Create(ctx(t), &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		StringData: map[string]string{"accessKeySecret": "s3cr3t", "other": "x"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx(t), &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Data:       map[string]string{"host": "broker.local", "MODE": "fast"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	envDir := signalDir(t)
	envFile := filepath.Join(envDir, "env.json")
	ctr := testContainer(
		v1.EnvVar{Name: "LK_ENV_FILE", Value: envFile},
		v1.EnvVar{Name: "PLAIN", Value: "v1"},
		v1.EnvVar{Name: "EXPANDED", Value: "$(PLAIN)-$(POD_NAME)-$$(PLAIN)-$(MISSING)"},
		v1.EnvVar{Name: "NS", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		v1.EnvVar{Name: "NODE", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		v1.EnvVar{Name: "SA", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
		v1.EnvVar{Name: "LABEL", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}}},
		v1.EnvVar{Name: "SECRET", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "creds"}, Key: "accessKeySecret"}}},
		v1.EnvVar{Name: "CM", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "host"}}},
		v1.EnvVar{Name: "OPTIONAL", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: ptr.To(true)}}},
	)
	ctr.EnvFrom = []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}}
	ctr.Args = []string{"--flag=$(PLAIN)", "$(NS)"}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "env", Labels: map[string]string{"tier": "backend"}},
		Spec:       v1.PodSpec{Containers: []v1.Container{ctr}, TerminationGracePeriodSeconds: ptr.To[int64](5)},
	}
	withHostDir(&pod.Spec, envDir)
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Env  []string
		Args []string
	}
	eventually(t, 60*time.Second, func() (bool, string) {
		b, err := os.ReadFile(envFile)
		if err != nil {
			return false, err.Error()
		}
		return json.Unmarshal(b, &got) == nil, string(b)
	})
	env := map[string]string{}
	for _, kv := range got.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	p, err := c.CoreV1().Pods(ns).Get(ctx(t), "env", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PLAIN": "v1", "EXPANDED": "v1-env-$(PLAIN)-$(MISSING)", "NS": ns, "NODE": p.Spec.NodeName,
		"SA": "default", "LABEL": "backend", "SECRET": "s3cr3t", "CM": "broker.local",
		"CFG_host": "broker.local", "CFG_MODE": "fast", "POD_IP": p.Status.PodIP, "POD_NAME": "env",
		"LK_LISTEN": p.Status.PodIP + ":8080", "KUBERNETES_SERVICE_HOST": apiServiceHost(t, c),
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["OPTIONAL"]; ok {
		t.Errorf("optional env from a missing Secret is set")
	}
	// Credentials: lk-agent writes a kubeconfig, the kubelet mounts the token volume.
	if kc := env["KUBECONFIG"]; kc == "" && !onKubelet(t, c) {
		t.Errorf("no KUBECONFIG in the container's env")
	}
	if onKubelet(t, c) && !slices.ContainsFunc(p.Spec.Containers[0].VolumeMounts, func(m v1.VolumeMount) bool {
		return m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
	}) {
		t.Errorf("no service account token mounted: %+v", p.Spec.Containers[0].VolumeMounts)
	}
	if !slices.Equal(got.Args, []string{"--flag=v1", ns}) {
		t.Errorf("args = %q", got.Args)
	}

	// kubectl logs: the apiserver asks the agent's kubelet port.
	eventually(t, 30*time.Second, func() (bool, string) {
		b, err := c.CoreV1().Pods(ns).GetLogs("env", &v1.PodLogOptions{Container: "app"}).DoRaw(ctx(t))
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(b), "lk-testapp env serving on"), string(b)
	})
}

// A container that keeps failing is restarted with back-off, and its pod reports the
// restarts and the last exit code.
func TestRestartWithBackoff(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	createExitingPod(t, c, ns, "crash", "500ms", "3", "")
	sawBackOff := false
	eventually(t, 60*time.Second, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), "crash", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, fmt.Sprintf("%v", err)
		}
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			sawBackOff = true
		}
		last := cs.LastTerminationState.Terminated
		return cs.RestartCount >= 2 && last != nil && last.ExitCode == 3 && sawBackOff && p.Status.Phase == v1.PodRunning,
			fmt.Sprintf("restarts=%d last=%+v state=%+v phase=%s sawBackOff=%v", cs.RestartCount, last, cs.State, p.Status.Phase, sawBackOff)
	})
}

// A restartPolicy Never pod that exits 0 ends Succeeded.
func TestRunToCompletion(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	createExitingPod(t, c, ns, "once", "200ms", "0", v1.RestartPolicyNever)
	eventually(t, 60*time.Second, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), "once", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == v1.PodSucceeded, fmt.Sprintf("phase %s", p.Status.Phase)
	})
}

// An image that is nowhere (lk-agent: maps to no executable; the kubelet: not imported, and no
// registry is reachable from the node) leaves the pod Pending, waiting with a pull error.
func TestUnknownImage(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	// lk-agent names the image in its message; containerd names the reference it tried to pull.
	wantMessage := "ImageNotKnown"
	if onKubelet(t, c) {
		wantMessage = "no-such-image"
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "noimage"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "x", Image: "example.invalid/no-such-image:1.0"}}}}
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), "noimage", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, fmt.Sprintf("%v", err)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return p.Status.Phase == v1.PodPending && w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, wantMessage),
			fmt.Sprintf("phase %s, state %+v", p.Status.Phase, p.Status.ContainerStatuses[0].State)
	})
}

// A process that ignores SIGTERM is killed when the grace period is over, then its pod is
// removed.
func TestGracePeriodThenSIGKILL(t *testing.T) {
	t.Parallel()
	c := client(t)
	ns := namespace(t, c)
	sigDir := signalDir(t)
	ctr := testContainer(v1.EnvVar{Name: "LK_SIGNAL_DIR", Value: sigDir}, v1.EnvVar{Name: "LK_IGNORE_TERM", Value: "true"})
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn"}, Spec: v1.PodSpec{Containers: []v1.Container{ctr}, TerminationGracePeriodSeconds: ptr.To[int64](3)}}
	withHostDir(&pod.Spec, sigDir)
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var uid = pod.UID
	eventually(t, 60*time.Second, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), "stubborn", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		uid = p.UID
		return podReady(p), fmt.Sprintf("phase %s", p.Status.Phase)
	})
	start := time.Now()
	if err := c.CoreV1().Pods(ns).Delete(ctx(t), "stubborn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, c, ns, "stubborn", 30*time.Second)
	took := time.Since(start)
	if took < 3*time.Second {
		t.Errorf("pod removed after %s, before its 3s grace period", took)
	}
	if s := signalsOf(sigDir, "stubborn"); !strings.HasPrefix(s, "SIGTERM") {
		t.Errorf("recorded %q, want SIGTERM first", s)
	}
	if pids := processesOfPod(uid); len(pids) != 0 {
		t.Errorf("processes %v survived", pids)
	}
}

// apiServiceHost is the KUBERNETES_SERVICE_HOST pods get: the kubernetes Service's cluster IP
// on the kubelet node, 127.0.0.1 (the API server itself) on lk-agent.
func apiServiceHost(t testing.TB, c kubernetes.Interface) string {
	if !onKubelet(t, c) {
		return "127.0.0.1"
	}
	svc, err := c.CoreV1().Services("default").Get(ctx(t), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

var _ = appsv1.SchemeGroupVersion
