package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/kubernetes/pkg/api/v1/resource"
	"k8s.io/kubernetes/pkg/fieldpath"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// imageName is the last path component of an image reference, without tag or digest:
// "registry.example:5000/team/iotsub-worker:1.2@sha256:..." -> "iotsub-worker".
func imageName(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, "/"); i >= 0 {
		image = image[i+1:]
	}
	if i := strings.Index(image, ":"); i >= 0 {
		image = image[:i]
	}
	return image
}

// resolveImage maps an image to the executable that stands for it.
func (a *agent) resolveImage(image string) (string, error) {
	name := imageName(image)
	path, ok := a.cfg.images[name]
	if !ok {
		return "", fmt.Errorf("ImageNotKnown: no executable is mapped to image %q (name %q); map one with --image %s=PATH or LOCALKUBE_IMAGES", image, name, name)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("image %q maps to %s: %v (not built yet?)", image, path, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("image %q maps to %s, which is not an executable file", image, path)
	}
	return path, nil
}

// processSpec resolves the container's command, args, env and working directory.
func (a *agent) processSpec(ctx context.Context, w *podWorker, c *v1.Container, imagePath string) (procSpec, error) {
	pod := w.currentPod()
	env, err := a.containerEnv(ctx, w, pod, c)
	if err != nil {
		return procSpec{}, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	mapping := expansion.MappingFuncFor(vars)
	expand := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expansion.Expand(s, mapping)
		}
		return out
	}
	// Mount paths become the volumes' directories (volumes.go).
	mounted := w.mountedPaths(c)
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		env[i] = k + "=" + mounted(v)
	}
	expandMounted := expand
	expand = func(in []string) []string {
		out := expandMounted(in)
		for i := range out {
			out[i] = mounted(out[i])
		}
		return out
	}
	spec := procSpec{path: imagePath, env: env}
	// The image's entrypoint is its executable. A command replaces it: a command naming the
	// image's executable (by base name) still runs it; anything else is looked up on PATH.
	if len(c.Command) > 0 {
		cmd := expand(c.Command)
		base := filepath.Base(cmd[0])
		if base != filepath.Base(imagePath) && base != imageName(c.Image) {
			p, err := exec.LookPath(cmd[0])
			if err != nil {
				return procSpec{}, fmt.Errorf("command %q: %v", cmd[0], err)
			}
			spec.path = p
		}
		spec.args = append(cmd[1:], expand(c.Args)...)
	} else {
		spec.args = expand(c.Args)
	}
	spec.dir = filepath.Join(w.dir, "work")
	if c.WorkingDir != "" {
		if st, err := os.Stat(c.WorkingDir); err == nil && st.IsDir() {
			spec.dir = c.WorkingDir
		}
	}
	return spec, nil
}

// containerEnv follows the kubelet: the kubernetes service variables, then envFrom, then env
// (each value may refer to earlier ones as $(NAME)), then what a local process needs.
func (a *agent) containerEnv(ctx context.Context, w *podWorker, pod *v1.Pod, c *v1.Container) ([]string, error) {
	u := strings.TrimPrefix(strings.TrimPrefix(a.cfg.apiserverURL, "https://"), "http://")
	host, port, ok := strings.Cut(u, ":")
	if !ok {
		port = "443"
	}
	var order []string
	vars := map[string]string{}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("KUBERNETES_SERVICE_HOST", host)
	set("KUBERNETES_SERVICE_PORT", port)
	set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	set("KUBERNETES_PORT", "tcp://"+u)
	set(fmt.Sprintf("KUBERNETES_PORT_%s_TCP", port), "tcp://"+u)
	set(fmt.Sprintf("KUBERNETES_PORT_%s_TCP_PROTO", port), "tcp")
	set(fmt.Sprintf("KUBERNETES_PORT_%s_TCP_PORT", port), port)
	set(fmt.Sprintf("KUBERNETES_PORT_%s_TCP_ADDR", port), host)

	core := a.client.CoreV1()
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := core.ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptrTrue(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("configmap %q: %v", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := core.Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptrTrue(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("secret %q: %v", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			k = from.Prefix + k
			if len(validation.IsEnvVarName(k)) == 0 {
				set(k, v)
			}
		}
	}

	mapping := expansion.MappingFuncFor(vars)
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expansion.Expand(e.Value, mapping))
			continue
		}
		v, skip, err := a.envValueFrom(ctx, w, pod, c, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %v", e.Name, err)
		}
		if !skip {
			set(e.Name, v)
		}
	}

	// A process also needs a PATH and a HOME; the pod's kubeconfig comes last unless the
	// pod set KUBECONFIG itself.
	if _, ok := vars["PATH"]; !ok {
		set("PATH", os.Getenv("PATH"))
	}
	if _, ok := vars["HOME"]; !ok {
		set("HOME", filepath.Join(w.dir, "work"))
	}
	if _, ok := vars["HOSTNAME"]; !ok {
		set("HOSTNAME", pod.Name)
	}
	if w.automount(pod) {
		if _, ok := vars["KUBECONFIG"]; !ok {
			set("KUBECONFIG", filepath.Join(w.dir, "kubeconfig"))
		}
		set("LOCALKUBE_SERVICEACCOUNT_DIR", filepath.Join(w.dir, "serviceaccount"))
	}
	set("LOCALKUBE_POD_UID", string(pod.UID))
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

func ptrTrue(b *bool) bool { return b != nil && *b }

func (a *agent) envValueFrom(ctx context.Context, w *podWorker, pod *v1.Pod, c *v1.Container, src *v1.EnvVarSource) (value string, skip bool, err error) {
	core := a.client.CoreV1()
	switch {
	case src.FieldRef != nil:
		switch src.FieldRef.FieldPath {
		case "spec.nodeName":
			return pod.Spec.NodeName, false, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, false, nil
		case "status.podIP", "status.podIPs":
			return w.ip, false, nil
		case "status.hostIP", "status.hostIPs":
			return "127.0.0.1", false, nil
		}
		v, err := fieldpath.ExtractFieldPathAsString(pod, src.FieldRef.FieldPath)
		return v, false, err
	case src.ResourceFieldRef != nil:
		v, err := resource.ExtractResourceValueByContainerNameAndNodeAllocatable(src.ResourceFieldRef, pod, c.Name, nodeCapacity())
		return v, false, err
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := core.Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if ptrTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q: %v", ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if ptrTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), false, nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := core.ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if ptrTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configmap %q: %v", ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if ptrTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, false, nil
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}
