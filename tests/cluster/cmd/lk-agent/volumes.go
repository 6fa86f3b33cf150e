package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Volumes: Secret volumes and projected volumes (Secret and serviceAccountToken sources) are
// written under the pod's directory and kept current, as the kubelet does: a Secret's new data
// reaches running containers in place (within secretSyncPeriod), a token is renewed at 80% of its
// life. A local process cannot see the mount path, so the agent rewrites the mount path to the
// volume's directory in the container's env and args (mountedPaths). Other volume types are not
// supported and fail the pod's sandbox with a clear message.

// secretSyncPeriod: how often a Secret volume is re-read (the kubelet's sync period is a minute).
const secretSyncPeriod = 10 * time.Second

func (w *podWorker) volumeDir(name string) string {
	return filepath.Join(w.dir, "volumes", name)
}

// prepareVolumes writes every volume once; an error names the volume and what is wrong.
func (w *podWorker) prepareVolumes(ctx context.Context) error {
	pod := w.currentPod()
	var expiries []tokenExpiry
	for _, vol := range pod.Spec.Volumes {
		switch {
		case vol.Secret != nil, vol.Projected != nil, vol.ConfigMap != nil, vol.DownwardAPI != nil:
			exp, err := w.writeVolume(ctx, pod, vol)
			if err != nil {
				return fmt.Errorf("volume %q: %w", vol.Name, err)
			}
			expiries = append(expiries, exp...)
		case vol.EmptyDir != nil:
			if err := os.MkdirAll(w.volumeDir(vol.Name), 0o777); err != nil {
				return err
			}
		default:
			return fmt.Errorf("volume %q: lk-agent supports secret, configMap, downwardAPI, projected and emptyDir volumes only", vol.Name)
		}
	}
	go w.keepVolumesFresh(ctx, pod, expiries)
	return nil
}

type tokenExpiry struct {
	volume string
	issued time.Time
	exp    time.Time
}

// writeVolume writes one volume's files; for its serviceAccountToken sources, when they expire.
func (w *podWorker) writeVolume(ctx context.Context, pod *v1.Pod, vol v1.Volume) ([]tokenExpiry, error) {
	files := map[string][]byte{}
	var expiries []tokenExpiry
	if s := vol.Secret; s != nil {
		if err := w.secretFiles(ctx, pod, s.SecretName, s.Items, ptrTrue(s.Optional), files); err != nil {
			return nil, err
		}
	}
	if c := vol.ConfigMap; c != nil {
		if err := w.configMapFiles(ctx, pod, c.Name, c.Items, ptrTrue(c.Optional), files); err != nil {
			return nil, err
		}
	}
	if d := vol.DownwardAPI; d != nil {
		if err := downwardFiles(pod, d.Items, files); err != nil {
			return nil, err
		}
	}
	if p := vol.Projected; p != nil {
		for _, src := range p.Sources {
			switch {
			case src.Secret != nil:
				if err := w.secretFiles(ctx, pod, src.Secret.Name, src.Secret.Items, ptrTrue(src.Secret.Optional), files); err != nil {
					return nil, err
				}
			case src.ConfigMap != nil:
				if err := w.configMapFiles(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, ptrTrue(src.ConfigMap.Optional), files); err != nil {
					return nil, err
				}
			case src.DownwardAPI != nil:
				if err := downwardFiles(pod, src.DownwardAPI.Items, files); err != nil {
					return nil, err
				}
			case src.ServiceAccountToken != nil:
				t := src.ServiceAccountToken
				seconds := ptr.Deref(t.ExpirationSeconds, 3600)
				spec := authenticationv1.TokenRequestSpec{
					ExpirationSeconds: ptr.To(seconds),
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				}
				if t.Audience != "" {
					spec.Audiences = []string{t.Audience}
				}
				tr, err := w.a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, saName(pod),
					&authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
				if err != nil {
					return nil, fmt.Errorf("requesting a token for service account %s/%s: %w", pod.Namespace, saName(pod), err)
				}
				files[t.Path] = []byte(tr.Status.Token)
				expiries = append(expiries, tokenExpiry{volume: vol.Name, issued: time.Now(), exp: tr.Status.ExpirationTimestamp.Time})
			default:
				return nil, fmt.Errorf("lk-agent supports projected secret, configMap, downwardAPI and serviceAccountToken sources only")
			}
		}
	}
	return expiries, writeFiles(w.volumeDir(vol.Name), files)
}

func (w *podWorker) secretFiles(ctx context.Context, pod *v1.Pod, name string, items []v1.KeyToPath, optional bool, files map[string][]byte) error {
	s, err := w.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional {
			return nil
		}
		return fmt.Errorf("secret %q: %w", name, err)
	}
	return pickItems("secret", name, s.Data, items, optional, files)
}

func (w *podWorker) configMapFiles(ctx context.Context, pod *v1.Pod, name string, items []v1.KeyToPath, optional bool, files map[string][]byte) error {
	cm, err := w.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional {
			return nil
		}
		return fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return pickItems("configmap", name, data, items, optional, files)
}

// pickItems adds to files every key of data (no items), or the items named, at their paths.
func pickItems(kind, name string, data map[string][]byte, items []v1.KeyToPath, optional bool, files map[string][]byte) error {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return nil
	}
	for _, item := range items {
		v, ok := data[item.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s %q has no key %q", kind, name, item.Key)
		}
		files[item.Path] = v
	}
	return nil
}

// downwardFiles writes the pod's own fields (metadata only: what the service account admission
// plugin's kube-api-access volume and most charts ask for).
func downwardFiles(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, files map[string][]byte) error {
	for _, item := range items {
		if item.FieldRef == nil {
			return fmt.Errorf("downwardAPI %q: lk-agent supports fieldRef only", item.Path)
		}
		var value string
		switch path := item.FieldRef.FieldPath; path {
		case "metadata.namespace":
			value = pod.Namespace
		case "metadata.name":
			value = pod.Name
		case "metadata.uid":
			value = string(pod.UID)
		case "metadata.labels", "metadata.annotations":
			m := pod.Labels
			if path == "metadata.annotations" {
				m = pod.Annotations
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				value += fmt.Sprintf("%s=%q\n", k, m[k])
			}
		default:
			return fmt.Errorf("downwardAPI %q: field %q is not supported by lk-agent", item.Path, path)
		}
		files[item.Path] = []byte(value)
	}
	return nil
}

// writeFiles makes dir hold exactly files, each replaced atomically; unchanged files are not
// rewritten.
func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(path, data, 0o644); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, keep := files[e.Name()]; !keep && !e.IsDir() {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// keepVolumesFresh re-reads Secret volumes every secretSyncPeriod and renews tokens at 80% of
// their life, until the pod stops.
func (w *podWorker) keepVolumesFresh(ctx context.Context, pod *v1.Pod, expiries []tokenExpiry) {
	renewAt := map[string]time.Time{}
	for _, e := range expiries {
		at := e.issued.Add(time.Duration(float64(e.exp.Sub(e.issued)) * 0.8))
		if old, ok := renewAt[e.volume]; !ok || at.Before(old) {
			renewAt[e.volume] = at
		}
	}
	tick := time.NewTicker(secretSyncPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stopCh:
			return
		case <-tick.C:
		}
		for _, vol := range pod.Spec.Volumes {
			if vol.Secret == nil && vol.Projected == nil && vol.ConfigMap == nil && vol.DownwardAPI == nil {
				continue
			}
			hasToken := false
			if vol.Projected != nil {
				for _, src := range vol.Projected.Sources {
					hasToken = hasToken || src.ServiceAccountToken != nil
				}
			}
			// A volume with a token is rewritten (with a new token) only when the token is due.
			if hasToken && time.Now().Before(renewAt[vol.Name]) {
				continue
			}
			exp, err := w.writeVolume(ctx, pod, vol)
			if err != nil {
				klog.ErrorS(err, "refreshing volume", "pod", klog.KObj(pod), "volume", vol.Name)
				continue
			}
			for _, e := range exp {
				renewAt[vol.Name] = e.issued.Add(time.Duration(float64(e.exp.Sub(e.issued)) * 0.8))
			}
		}
	}
}

// mountedPaths maps each of the container's mount paths to its volume's directory, longest
// path first, so a process finds its files where the pod spec said they are.
func (w *podWorker) mountedPaths(c *v1.Container) func(string) string {
	type mapping struct{ from, to string }
	var maps []mapping
	for _, m := range c.VolumeMounts {
		to := w.volumeDir(m.Name)
		if m.SubPath != "" {
			to = filepath.Join(to, m.SubPath)
		}
		maps = append(maps, mapping{strings.TrimSuffix(m.MountPath, "/"), to})
	}
	sort.Slice(maps, func(i, j int) bool { return len(maps[i].from) > len(maps[j].from) })
	return func(s string) string {
		for _, m := range maps {
			if s == m.from || strings.HasPrefix(s, m.from+"/") {
				return m.to + strings.TrimPrefix(s, m.from)
			}
			if i := strings.Index(s, "="+m.from); i >= 0 {
				// --flag=/mount/path
				rest := s[i+1:]
				if rest == m.from || strings.HasPrefix(rest, m.from+"/") {
					return s[:i+1] + m.to + strings.TrimPrefix(rest, m.from)
				}
			}
		}
		return s
	}
}
