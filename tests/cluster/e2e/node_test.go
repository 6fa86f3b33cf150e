package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The chart's and the operator's security context for the operator and worker pods.
func chartPodSecurityContext() *v1.PodSecurityContext {
	return &v1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65532),
		RunAsGroup:     ptr.To[int64](65532),
		SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault},
	}
}

func chartContainerSecurityContext() *v1.SecurityContext {
	return &v1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &v1.Capabilities{Drop: []v1.Capability{"ALL"}},
	}
}

// inspection is what the test program's GET /inspect reports about itself.
type inspection struct {
	UID          int               `json:"uid"`
	GID          int               `json:"gid"`
	CapEff       string            `json:"CapEff"`
	CapBnd       string            `json:"CapBnd"`
	Seccomp      string            `json:"Seccomp"`
	NoNewPrivs   string            `json:"NoNewPrivs"`
	RootWritable string            `json:"rootWritable"`
	Files        map[string]string `json:"files"`
}

func inspectPod(t testing.TB, c kubernetes.Interface, ns, pod string) (inspection, error) {
	var got inspection
	b, err := c.CoreV1().Pods(ns).ProxyGet("http", pod, "8080", "/inspect", nil).DoRaw(ctx(t))
	if err != nil {
		return got, err
	}
	return got, json.Unmarshal(b, &got)
}

// On the kubelet node a pod runs with the chart's full security context (non-root 65532, read-only
// root, no capabilities, no privilege escalation, seccomp RuntimeDefault); a Secret volume follows
// its Secret in place (same pod, same container, new content in the file); a projected
// service-account token carries the audience STS asks for.
func TestSecurityContextSecretVolumeAndProjectedToken(t *testing.T) {
	t.Parallel()
	c := client(t)
	requireKubelet(t, c)
	ns := namespace(t, c)
	secrets := c.CoreV1().Secrets(ns)
	if _, err := secrets.Create(ctx(t), &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		StringData: map[string]string{"accessKeySecret": "first"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const keyFile, tokenFile = "/etc/creds/accessKeySecret", "/var/run/secrets/sts/token"
	ctr := testContainer(v1.EnvVar{Name: "LK_FILES", Value: keyFile + "," + tokenFile})
	ctr.SecurityContext = chartContainerSecurityContext()
	ctr.VolumeMounts = []v1.VolumeMount{
		{Name: "creds", MountPath: "/etc/creds", ReadOnly: true},
		{Name: "sts-token", MountPath: "/var/run/secrets/sts", ReadOnly: true},
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "confined"},
		Spec: v1.PodSpec{
			SecurityContext:               chartPodSecurityContext(),
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers:                    []v1.Container{ctr},
			Volumes: []v1.Volume{
				{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "creds"}}},
				{Name: "sts-token", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{{
					ServiceAccountToken: &v1.ServiceAccountTokenProjection{Audience: "sts.aliyuncs.com", ExpirationSeconds: ptr.To[int64](3600), Path: "token"},
				}}}}},
			},
		},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var uid string
	eventually(t, 60*time.Second, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), "confined", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		uid = string(p.UID)
		return podReady(p), fmt.Sprintf("phase %s, containers %+v", p.Status.Phase, p.Status.ContainerStatuses)
	})

	got, err := inspectPod(t, c, ns, "confined")
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != 65532 || got.GID != 65532 {
		t.Errorf("runs as %d:%d, want 65532:65532", got.UID, got.GID)
	}
	if got.CapEff != "0000000000000000" || got.CapBnd != "0000000000000000" {
		t.Errorf("capabilities effective %s, bounding %s; want none", got.CapEff, got.CapBnd)
	}
	if got.Seccomp != "2" || got.NoNewPrivs != "1" {
		t.Errorf("Seccomp %q (want 2, a filter), NoNewPrivs %q (want 1)", got.Seccomp, got.NoNewPrivs)
	}
	if !strings.Contains(got.RootWritable, "read-only file system") {
		t.Errorf("writing to / gave %q, want a read-only file system", got.RootWritable)
	}
	if got.Files[keyFile] != "first" {
		t.Errorf("%s = %q, want first", keyFile, got.Files[keyFile])
	}
	claims := jwtClaims(t, got.Files[tokenFile])
	if aud, _ := claims["aud"].([]any); !slices.Equal(aud, []any{"sts.aliyuncs.com"}) {
		t.Errorf("token audience %v, want [sts.aliyuncs.com]", claims["aud"])
	}
	if sub := claims["sub"]; sub != "system:serviceaccount:"+ns+":default" {
		t.Errorf("token subject %v", sub)
	}

	// The Secret changes; the file follows within the kubelet's sync period, in the same pod
	// and container (no restart).
	s, err := secrets.Get(ctx(t), "creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"accessKeySecret": []byte("second")}
	if _, err := secrets.Update(ctx(t), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, func() (bool, string) {
		got, err := inspectPod(t, c, ns, "confined")
		if err != nil {
			return false, err.Error()
		}
		return got.Files[keyFile] == "second", fmt.Sprintf("%s = %q", keyFile, got.Files[keyFile])
	})
	p, err := c.CoreV1().Pods(ns).Get(ctx(t), "confined", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(p.UID) != uid || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod was replaced or restarted: uid %s (was %s), restarts %d", p.UID, uid, p.Status.ContainerStatuses[0].RestartCount)
	}
}

// The project's images (imported from the debug binaries by up.sh) run under the chart's security
// context: the emulator's image starts with a read-only root (its state in an emptyDir) and
// answers its readiness probe over HTTPS.
func TestProjectImageRunsConfined(t *testing.T) {
	t.Parallel()
	c := client(t)
	requireKubelet(t, c)
	ns := namespace(t, c)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "emulator"},
		Spec: v1.PodSpec{
			SecurityContext:               chartPodSecurityContext(),
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []v1.Container{{
				Name:            "emulator",
				Image:           "localhost/iotsub-emulator:localkube",
				ImagePullPolicy: v1.PullNever,
				SecurityContext: chartContainerSecurityContext(),
				VolumeMounts:    []v1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
				ReadinessProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080), Scheme: v1.URISchemeHTTPS}},
					PeriodSeconds: 1,
				},
			}},
			Volumes: []v1.Volume{{Name: "tmp", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}},
		},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() (bool, string) {
		p, err := c.CoreV1().Pods(ns).Get(ctx(t), "emulator", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return podReady(p), fmt.Sprintf("phase %s, containers %+v", p.Status.Phase, p.Status.ContainerStatuses)
	})
}

// jwtClaims decodes the payload of a JWT (not verified: the API server signed it).
func jwtClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}
