// Package e2e tests the local control plane (tests/cluster) end to end: the real
// kube-apiserver, controller-manager and scheduler, and the node agent running pods as local
// processes. Start it first with `make cluster-up`. They use target/localkube/kubeconfig of this
// repository, or LOCALKUBE_KUBECONFIG.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const testImage = "localhost/lk-testapp:test"

func repoRoot(t testing.TB) string {
	dir, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func restConfig(t testing.TB) *rest.Config {
	// Deliberately not $KUBECONFIG: these tests create and delete things, and must never
	// run against whatever cluster a developer's KUBECONFIG points at.
	path := os.Getenv("LOCALKUBE_KUBECONFIG")
	if path == "" {
		path = filepath.Join(repoRoot(t), "target", "localkube", "kubeconfig")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no kubeconfig at %s: start the cluster first (make cluster-up): %v", path, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg
}

func client(t testing.TB) kubernetes.Interface {
	c, err := kubernetes.NewForConfig(restConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// namespace makes a fresh namespace, waits for its default service account, and deletes it
// when the test ends.
func namespace(t testing.TB, c kubernetes.Interface) string {
	name := fmt.Sprintf("e2e-%s-%04d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), rand.IntN(10000))
	if len(name) > 60 {
		name = name[len(name)-60:]
		name = "e" + strings.TrimLeft(name, "-")[1:]
	}
	_, err := c.CoreV1().Namespaces().Create(ctx(t), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	eventually(t, time.Minute, func() (bool, string) {
		_, err := c.CoreV1().ServiceAccounts(name).Get(ctx(t), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprintf("default service account: %v", err)
	})
	return name
}

// eventually polls cond until it holds, failing the test with cond's last message at the
// deadline.
func eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testContainer is the test program, serving on its own pod IP so that replicas don't
// collide, with a readiness probe. LOCALKUBE_POD_UID marks its processes (processesOfPod) on
// either node.
func testContainer(extraEnv ...v1.EnvVar) v1.Container {
	env := []v1.EnvVar{
		{Name: "LOCALKUBE_POD_UID", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
		{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "LK_LISTEN", Value: "$(POD_IP):8080"},
	}
	return v1.Container{
		Name:  "app",
		Image: testImage,
		Env:   append(env, extraEnv...),
		Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/readyz", Port: intOrName("http")}},
			PeriodSeconds: 1,
		},
	}
}

func deployment(name string, replicas int32, c v1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					Containers:                    []v1.Container{c},
				},
			},
		},
	}
}

func podsOf(t testing.TB, c kubernetes.Interface, ns, app string) []v1.Pod {
	list, err := c.CoreV1().Pods(ns).List(ctx(t), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func waitPodGone(t testing.TB, c kubernetes.Interface, ns, name string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprintf("pod %s still there (err %v, phase %v)", name, err, podPhase(p))
	})
}

func podPhase(p *v1.Pod) string {
	if p == nil {
		return "?"
	}
	return string(p.Status.Phase)
}

// processesOfPod lists the local processes that carry the pod's UID in their environment
// (testContainer's LOCALKUBE_POD_UID; the containers' processes are the host's too).
func processesOfPod(uid types.UID) []string {
	want := []byte("LOCALKUBE_POD_UID=" + string(uid))
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, e.Name())
			}
		}
	}
	return pids
}

// signalsOf reads what the test program recorded about the signals it got.
func signalsOf(dir, pod string) string {
	b, _ := os.ReadFile(filepath.Join(dir, pod))
	return string(b)
}

// signalDir is a directory that the test program (another process, started by the node
// agent, as uid 65532 in a container on the kubelet node) can write into; withHostDir mounts it.
func signalDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withHostDir mounts the host directory dir at the same path into every container of spec (a
// hostPath volume: lk-agent's processes see the host's files anyway).
func withHostDir(spec *v1.PodSpec, dir string) {
	name := fmt.Sprintf("host-dir-%d", len(spec.Volumes))
	spec.Volumes = append(spec.Volumes, v1.Volume{Name: name, VolumeSource: v1.VolumeSource{
		HostPath: &v1.HostPathVolumeSource{Path: dir, Type: ptr.To(v1.HostPathDirectory)},
	}})
	for i := range spec.Containers {
		spec.Containers[i].VolumeMounts = append(spec.Containers[i].VolumeMounts, v1.VolumeMount{Name: name, MountPath: dir})
	}
}

// createExitingPod creates pod name whose test container exits with code after the given time
// (no readiness probe); policy "" leaves the API's default restart policy.
func createExitingPod(t testing.TB, c kubernetes.Interface, ns, name, after, code string, policy v1.RestartPolicy) {
	t.Helper()
	ctr := testContainer(v1.EnvVar{Name: "LK_EXIT_AFTER", Value: after}, v1.EnvVar{Name: "LK_EXIT_CODE", Value: code})
	ctr.ReadinessProbe = nil
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PodSpec{RestartPolicy: policy, Containers: []v1.Container{ctr}}}
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// onKubelet reports whether the cluster's node is a real kubelet with containerd
// (LOCALKUBE_NODE_AGENT=kubelet), not lk-agent.
func onKubelet(t testing.TB, c kubernetes.Interface) bool {
	t.Helper()
	nodes, err := c.CoreV1().Nodes().List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") {
			return true
		}
	}
	return false
}

// requireKubelet skips a test of what only a real kubelet does (volumes, security contexts).
func requireKubelet(t testing.TB, c kubernetes.Interface) {
	t.Helper()
	if !onKubelet(t, c) {
		t.Skip("needs the kubelet node (LOCALKUBE_NODE_AGENT=kubelet): lk-agent mounts no volumes and applies no security context")
	}
}
