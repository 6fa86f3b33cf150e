package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

type agent struct {
	cfg      config
	client   kubernetes.Interface
	recorder record.EventRecorder

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	usedIPs map[string]types.UID
	nextIP  int
	stopped bool
}

func newAgent(cfg config, client kubernetes.Interface) *agent {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &agent{
		cfg:      cfg,
		client:   client,
		recorder: b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: cfg.nodeName}),
		workers:  map[types.UID]*podWorker{},
		usedIPs:  map[string]types.UID{},
	}
}

func (a *agent) run(ctx context.Context) error {
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	go a.heartbeat(ctx)
	if a.cfg.kubeletPort > 0 {
		go a.serveKubeletAPI(ctx)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.nodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.syncPod(ctx, obj.(*v1.Pod)) },
		UpdateFunc: func(_, obj any) { a.syncPod(ctx, obj.(*v1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				a.podRemoved(pod)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

func podTerminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}

// syncPod is called for every add or update of a pod bound to this node.
func (a *agent) syncPod(ctx context.Context, pod *v1.Pod) {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	w := a.workers[pod.UID]
	if w == nil {
		if pod.DeletionTimestamp != nil {
			// Nothing runs for it here (containers of a previous agent were killed at start):
			// finish the deletion at once.
			a.mu.Unlock()
			go a.finalDelete(ctx, pod)
			return
		}
		if podTerminal(pod) {
			a.mu.Unlock()
			return
		}
		w = newPodWorker(a, pod)
		a.workers[pod.UID] = w
		a.mu.Unlock()
		go w.run(ctx)
		return
	}
	a.mu.Unlock()
	w.update(pod)
}

// podRemoved: the pod is gone from the API (deleted with grace 0, by us or by someone else).
func (a *agent) podRemoved(pod *v1.Pod) {
	a.mu.Lock()
	w := a.workers[pod.UID]
	a.mu.Unlock()
	if w != nil {
		w.removedFromAPI()
	}
}

func (a *agent) workerDone(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.workers, uid)
	for ip, owner := range a.usedIPs {
		if owner == uid {
			delete(a.usedIPs, ip)
		}
	}
}

// allocateIP gives each pod its own loopback address (127.1.X.Y by default): every address of
// 127.0.0.0/8 reaches this host, so pods can all listen on the same port, each on its own IP.
func (a *agent) allocateIP(pod *v1.Pod) string {
	if pod.Spec.HostNetwork {
		return "127.0.0.1"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip := pod.Status.PodIP; ip != "" && strings.HasPrefix(ip, a.cfg.podIPPrefix+".") {
		if owner, ok := a.usedIPs[ip]; !ok || owner == pod.UID {
			a.usedIPs[ip] = pod.UID
			return ip
		}
	}
	for i := 0; i < 254*256; i++ {
		n := (a.nextIP + i) % (254 * 256)
		ip := fmt.Sprintf("%s.%d.%d", a.cfg.podIPPrefix, n/254, n%254+1)
		if _, used := a.usedIPs[ip]; !used {
			a.usedIPs[ip] = pod.UID
			a.nextIP = n + 1
			return ip
		}
	}
	return "127.0.0.1"
}

// finalDelete removes a pod whose containers are all stopped (grace period 0, as the kubelet does).
func (a *agent) finalDelete(ctx context.Context, pod *v1.Pod) {
	err := a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "deleting pod", "pod", klog.KObj(pod))
	}
}

// stopAll stops every container (the agent is exiting). Pods stay in the API.
func (a *agent) stopAll() {
	a.mu.Lock()
	a.stopped = true
	ws := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		ws = append(ws, w)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.stopContainers(a.cfg.shutdownGrace) }()
	}
	wg.Wait()
}

// killLeftovers kills process groups that a previous agent started and could not stop (it
// was killed itself). A pid file is trusted only if the process still carries the pod's UID
// in its environment.
func (a *agent) killLeftovers() {
	files, _ := filepath.Glob(filepath.Join(a.cfg.rootDir, "pods", "*", "containers", "*.pid"))
	for _, f := range files {
		uid := filepath.Base(filepath.Dir(filepath.Dir(f)))
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 1 && processHasEnv(pid, "LOCALKUBE_POD_UID="+uid) {
			klog.InfoS("killing leftover process group", "pid", pid, "podUID", uid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = os.Remove(f)
	}
}

func processHasEnv(pid int, kv string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, e := range bytes.Split(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}
