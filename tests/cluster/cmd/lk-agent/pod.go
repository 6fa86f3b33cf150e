package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// podWorker owns one pod bound to this node: its directory, service-account token, pod IP,
// container processes and the status it reports.
type podWorker struct {
	a   *agent
	uid types.UID

	mu        sync.Mutex
	pod       *v1.Pod
	ip        string
	dir       string
	startTime metav1.Time
	sandbox   bool // pod directory and credentials are ready
	initDone  bool
	initFail  bool
	inits     []*container
	apps      []*container

	dirty      chan struct{}
	updated    chan struct{}
	stopCh     chan struct{} // closed: containers must stop
	stopGrace  time.Duration
	stopping   bool
	deleting   bool // the pod has a deletionTimestamp: delete it once stopped
	gone       bool // the pod is no longer in the API
	runners    sync.WaitGroup
	runnersOut chan struct{}
}

func newPodWorker(a *agent, pod *v1.Pod) *podWorker {
	w := &podWorker{
		a:          a,
		uid:        pod.UID,
		pod:        pod.DeepCopy(),
		dir:        filepath.Join(a.cfg.rootDir, "pods", string(pod.UID)),
		startTime:  metav1.Now(),
		dirty:      make(chan struct{}, 1),
		updated:    make(chan struct{}, 1),
		stopCh:     make(chan struct{}),
		runnersOut: make(chan struct{}),
	}
	if pod.Status.StartTime != nil {
		w.startTime = *pod.Status.StartTime
	}
	for i := range pod.Spec.InitContainers {
		w.inits = append(w.inits, newContainer(w, pod.Spec.InitContainers[i], true))
	}
	for i := range pod.Spec.Containers {
		c := newContainer(w, pod.Spec.Containers[i], false)
		// A pod that ran under an earlier agent (its processes were stopped with it) goes on
		// counting restarts.
		for _, old := range pod.Status.ContainerStatuses {
			if old.Name == c.spec.Name && (old.State.Running != nil || old.State.Terminated != nil || old.LastTerminationState.Terminated != nil) {
				c.restarts = old.RestartCount + 1
			}
		}
		w.apps = append(w.apps, c)
	}
	w.initDone = len(w.inits) == 0
	return w
}

func (w *podWorker) currentPod() *v1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *v1.Pod) {
	w.mu.Lock()
	w.pod = pod.DeepCopy()
	w.mu.Unlock()
	select {
	case w.updated <- struct{}{}:
	default:
	}
}

func (w *podWorker) removedFromAPI() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.stop(2 * time.Second)
	select {
	case w.updated <- struct{}{}:
	default:
	}
}

// stop asks every container to stop: SIGTERM now, SIGKILL after grace.
func (w *podWorker) stop(grace time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		if grace < w.stopGrace {
			w.stopGrace = grace // a shorter grace period wins, as in the kubelet
		}
		return
	}
	w.stopping = true
	w.stopGrace = grace
	close(w.stopCh)
}

func (w *podWorker) grace() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopGrace
}

func (w *podWorker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

// stopContainers is used when the agent exits: stop, wait, leave the pod in the API.
func (w *podWorker) stopContainers(grace time.Duration) {
	w.stop(grace)
	<-w.runnersOut
}

func (w *podWorker) run(ctx context.Context) {
	pod := w.currentPod()
	log := klog.LoggerWithValues(klog.Background(), "pod", klog.KObj(pod))
	w.ip = w.a.allocateIP(pod)
	defer w.a.workerDone(w.uid)
	go func() {
		// Containers are started once the sandbox is ready; runnersOut closes when all returned.
		w.prepareAndStart(ctx, log)
		w.runners.Wait()
		close(w.runnersOut)
	}()

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			// The agent is stopping; stopAll stops the containers.
			<-w.runnersOut
			return
		case <-w.dirty:
			debounce.Reset(50 * time.Millisecond)
		case <-debounce.C:
			w.pushStatus(ctx, log)
		case <-w.updated:
			pod := w.currentPod()
			if pod.DeletionTimestamp != nil && !w.isStopping() {
				grace := 30 * time.Second
				if pod.DeletionGracePeriodSeconds != nil {
					grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
				}
				log.Info("pod deleted, stopping containers", "grace", grace)
				w.mu.Lock()
				w.deleting = true
				w.mu.Unlock()
				w.a.recorder.Eventf(pod, v1.EventTypeNormal, "Killing", "Stopping containers, grace period %s", grace)
				w.stop(grace)
			}
		case <-w.runnersOut:
			w.mu.Lock()
			stopping, gone, deleting := w.stopping, w.gone, w.deleting
			w.mu.Unlock()
			if !stopping {
				// Every container finished for good (restartPolicy Never/OnFailure): report the
				// terminal phase and wait for the pod's deletion.
				w.pushStatus(ctx, log)
				w.waitForDeletion(ctx)
				w.mu.Lock()
				gone, deleting = w.gone, w.deleting
				w.mu.Unlock()
			}
			if ctx.Err() != nil {
				return
			}
			if !gone {
				w.pushStatus(ctx, log)
				if deleting {
					w.a.finalDelete(ctx, w.currentPod())
				}
			}
			_ = os.RemoveAll(w.dir)
			log.Info("pod finished")
			return
		}
	}
}

func (w *podWorker) waitForDeletion(ctx context.Context) {
	for {
		w.mu.Lock()
		done := w.gone || w.pod.DeletionTimestamp != nil
		if w.pod.DeletionTimestamp != nil {
			w.deleting = true
		}
		w.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-w.updated:
		}
	}
}

// prepareAndStart makes the pod's directory and credentials, then runs init containers in
// order and starts the app containers.
func (w *podWorker) prepareAndStart(ctx context.Context, log klog.Logger) {
	w.markDirty()
	for attempt := 0; ; attempt++ {
		err := w.prepareSandbox(ctx)
		if err == nil {
			break
		}
		log.Error(err, "preparing pod, will retry")
		if attempt == 0 {
			w.a.recorder.Eventf(w.currentPod(), v1.EventTypeWarning, "FailedCreatePodSandBox", "%v", err)
		}
		select {
		case <-w.stopCh:
			return
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	w.mu.Lock()
	w.sandbox = true
	w.mu.Unlock()
	w.markDirty()

	for _, c := range w.inits {
		if c.spec.RestartPolicy != nil && *c.spec.RestartPolicy == v1.ContainerRestartPolicyAlways {
			// A sidecar: runs alongside the app containers.
			w.runners.Add(1)
			go func() { defer w.runners.Done(); c.run(ctx) }()
			continue
		}
		if ok := c.run(ctx); !ok {
			w.mu.Lock()
			w.initFail = !w.stopping
			w.mu.Unlock()
			w.markDirty()
			return
		}
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	w.markDirty()
	for _, c := range w.apps {
		w.runners.Add(1)
		go func() { defer w.runners.Done(); c.run(ctx) }()
	}
}

// prepareSandbox creates the pod directory, and unless automountServiceAccountToken is
// false, a TokenRequest token of the pod's service account with a kubeconfig that uses it.
func (w *podWorker) prepareSandbox(ctx context.Context) error {
	pod := w.currentPod()
	for _, d := range []string{"containers", "work", "serviceaccount"} {
		if err := os.MkdirAll(filepath.Join(w.dir, d), 0o755); err != nil {
			return err
		}
	}
	info := fmt.Sprintf("%s/%s\n", pod.Namespace, pod.Name)
	if err := os.WriteFile(filepath.Join(w.dir, "pod"), []byte(info), 0o644); err != nil {
		return err
	}
	if err := w.prepareVolumes(ctx); err != nil {
		return err
	}
	if !w.automount(pod) {
		return nil
	}
	exp, err := w.refreshToken(ctx, pod)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(w.a.cfg.caFile)
	if err != nil {
		return err
	}
	sa := filepath.Join(w.dir, "serviceaccount")
	if err := writeFileAtomic(filepath.Join(sa, "ca.crt"), ca, 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(sa, "namespace"), []byte(pod.Namespace), 0o644); err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: localkube
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    tokenFile: %s
contexts:
- name: localkube
  context:
    cluster: localkube
    user: %s
    namespace: %s
current-context: localkube
`, w.a.cfg.apiserverURL, filepath.Join(sa, "ca.crt"), saName(pod), filepath.Join(sa, "token"), saName(pod), pod.Namespace)
	if err := writeFileAtomic(filepath.Join(w.dir, "kubeconfig"), []byte(kubeconfig), 0o600); err != nil {
		return err
	}
	go w.keepTokenFresh(ctx, pod, exp)
	return nil
}

func (w *podWorker) automount(pod *v1.Pod) bool {
	return pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken
}

func saName(pod *v1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

const tokenSeconds = 3600

func (w *podWorker) refreshToken(ctx context.Context, pod *v1.Pod) (time.Time, error) {
	tr, err := w.a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, saName(pod), &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](tokenSeconds),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("requesting a token for service account %s/%s: %w", pod.Namespace, saName(pod), err)
	}
	if err := writeFileAtomic(filepath.Join(w.dir, "serviceaccount", "token"), []byte(tr.Status.Token), 0o600); err != nil {
		return time.Time{}, err
	}
	return tr.Status.ExpirationTimestamp.Time, nil
}

// keepTokenFresh renews the token at 80% of its life, as the kubelet does.
func (w *podWorker) keepTokenFresh(ctx context.Context, pod *v1.Pod, exp time.Time) {
	issued := time.Now()
	for {
		wait := time.Duration(float64(exp.Sub(issued)) * 0.8)
		if wait < 10*time.Second {
			wait = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-w.stopCh:
			return
		case <-time.After(wait):
		}
		issued = time.Now()
		e, err := w.refreshToken(ctx, pod)
		if err != nil {
			klog.ErrorS(err, "refreshing token", "pod", klog.KObj(pod))
			exp = issued.Add(15 * time.Second)
			continue
		}
		exp = e
	}
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (w *podWorker) pushStatus(ctx context.Context, log klog.Logger) {
	pods := w.a.client.CoreV1().Pods(w.currentPod().Namespace)
	name := w.currentPod().Name
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pod.UID != w.uid {
			return nil
		}
		status := w.computeStatus(pod)
		if equality.Semantic.DeepEqual(pod.Status, status) {
			return nil
		}
		pod.Status = status
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		log.Error(err, "updating pod status")
		go func() {
			time.Sleep(time.Second)
			w.markDirty()
		}()
	}
}

// computeStatus derives the pod's status from its containers, keeping what others own
// (PodScheduled, readiness gates, other conditions, qosClass).
func (w *podWorker) computeStatus(pod *v1.Pod) v1.PodStatus {
	w.mu.Lock()
	sandbox, initDone, initFail, stopping := w.sandbox, w.initDone, w.initFail, w.stopping
	w.mu.Unlock()

	s := *pod.Status.DeepCopy()
	s.HostIP, s.HostIPs = "127.0.0.1", []v1.HostIP{{IP: "127.0.0.1"}}
	s.PodIP, s.PodIPs = w.ip, []v1.PodIP{{IP: w.ip}}
	start := w.startTime
	if s.StartTime == nil {
		s.StartTime = &start
	}
	s.InitContainerStatuses = nil
	for _, c := range w.inits {
		s.InitContainerStatuses = append(s.InitContainerStatuses, c.status())
	}
	s.ContainerStatuses = nil
	allReady := initDone
	var running, pending, succeeded, failed int
	for _, c := range w.apps {
		cs := c.status()
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		case cs.LastTerminationState.Terminated != nil:
			running++ // waiting to restart
		default:
			pending++
		}
	}
	policy := pod.Spec.RestartPolicy
	switch {
	case initFail:
		s.Phase = v1.PodFailed
	case !initDone || pending > 0:
		s.Phase = v1.PodPending
	case running > 0:
		s.Phase = v1.PodRunning
	case stopping || policy == v1.RestartPolicyNever:
		if failed > 0 {
			s.Phase = v1.PodFailed
		} else {
			s.Phase = v1.PodSucceeded
		}
	case policy == v1.RestartPolicyOnFailure:
		if failed > 0 {
			s.Phase = v1.PodRunning
		} else {
			s.Phase = v1.PodSucceeded
		}
	default:
		s.Phase = v1.PodRunning
	}
	if stopping {
		allReady = false
	}
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range s.Conditions {
			if c.Type == g.ConditionType && c.Status == v1.ConditionTrue {
				ok = true
			}
		}
		allReady = allReady && ok
	}
	containersReady := allReady
	for _, c := range w.apps {
		containersReady = containersReady && c.isReady()
	}
	boolStatus := func(b bool) v1.ConditionStatus {
		if b {
			return v1.ConditionTrue
		}
		return v1.ConditionFalse
	}
	setCondition(&s, v1.PodReadyToStartContainers, boolStatus(sandbox))
	setCondition(&s, v1.PodInitialized, boolStatus(initDone))
	setCondition(&s, v1.ContainersReady, boolStatus(containersReady))
	setCondition(&s, v1.PodReady, boolStatus(allReady))
	return s
}

func setCondition(s *v1.PodStatus, t v1.PodConditionType, status v1.ConditionStatus) {
	now := metav1.Now()
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			if s.Conditions[i].Status != status {
				s.Conditions[i].Status = status
				s.Conditions[i].LastTransitionTime = now
			}
			return
		}
	}
	s.Conditions = append(s.Conditions, v1.PodCondition{Type: t, Status: status, LastTransitionTime: now})
}
