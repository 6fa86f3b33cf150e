package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// container runs one container of a pod as a local process group, restarting it per the
// pod's restartPolicy with the kubelet's crash-loop back-off.
type container struct {
	w    *podWorker
	spec v1.Container
	init bool

	mu        sync.Mutex
	state     v1.ContainerState
	last      v1.ContainerState
	restarts  int32
	started   bool // startup probe passed (or none)
	readyOK   bool // readiness probe passed (or none)
	running   bool
	imagePath string
	runID     string
	pid       int
}

func newContainer(w *podWorker, spec v1.Container, init bool) *container {
	return &container{w: w, spec: spec, init: init,
		state: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
}

func (c *container) status() v1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := v1.ContainerStatus{
		Name:                 c.spec.Name,
		Image:                c.spec.Image,
		ImageID:              "",
		State:                *c.state.DeepCopy(),
		LastTerminationState: *c.last.DeepCopy(),
		RestartCount:         c.restarts,
		Ready:                c.running && c.started && c.readyOK,
		Started:              ptr.To(c.running && c.started),
	}
	if c.imagePath != "" {
		cs.ImageID = "localkube://" + c.imagePath
	}
	if c.runID != "" {
		cs.ContainerID = "localkube://" + c.runID
	}
	return cs
}

func (c *container) isReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running && c.started && c.readyOK
}

func (c *container) setWaiting(reason, msg string) {
	c.mu.Lock()
	c.state = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason, Message: msg}}
	c.mu.Unlock()
	c.w.markDirty()
}

func (c *container) event(typ, reason, format string, args ...any) {
	pod := c.w.currentPod()
	ref := pod.DeepCopy()
	c.w.a.recorder.Eventf(ref, typ, reason, format, args...)
}

// sleepOrStop waits d; false when the pod's containers must stop meanwhile.
func (c *container) sleepOrStop(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return !c.w.isStopping() && ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.w.stopCh:
		return false
	case <-ctx.Done():
		return false
	}
}

// run runs the container until the pod stops or, per restartPolicy, it should not restart.
// For an init container it returns whether it completed successfully.
func (c *container) run(ctx context.Context) bool {
	pod := c.w.currentPod()
	log := klog.LoggerWithValues(klog.Background(), "pod", klog.KObj(pod), "container", c.spec.Name)
	backoff := time.Duration(0)
	pullFailures := 0
	for {
		if c.w.isStopping() || ctx.Err() != nil {
			return false
		}
		path, err := c.w.a.resolveImage(c.spec.Image)
		if err != nil {
			reason := "ErrImagePull"
			if pullFailures > 0 {
				reason = "ImagePullBackOff"
			}
			if pullFailures == 0 {
				c.event(v1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.spec.Image, err)
			}
			pullFailures++
			c.setWaiting(reason, err.Error())
			if !c.sleepOrStop(ctx, min(time.Duration(pullFailures)*2*time.Second, 30*time.Second)) {
				return false
			}
			continue
		}
		if pullFailures > 0 || c.imagePath == "" {
			c.event(v1.EventTypeNormal, "Pulled", "Image %q resolved to %s", c.spec.Image, path)
		}
		pullFailures = 0
		c.mu.Lock()
		c.imagePath = path
		c.mu.Unlock()

		spec, err := c.w.a.processSpec(ctx, c.w, &c.spec, path)
		if err != nil {
			c.setWaiting("CreateContainerConfigError", err.Error())
			c.event(v1.EventTypeWarning, "Failed", "Error: %v", err)
			if !c.sleepOrStop(ctx, 3*time.Second) {
				return false
			}
			continue
		}

		exitCode, reason, msg, startedAt, finishedAt := c.runOnce(ctx, log, spec)
		term := &v1.ContainerStateTerminated{
			ExitCode: int32(exitCode), Reason: reason, Message: msg,
			StartedAt: startedAt, FinishedAt: finishedAt, ContainerID: "localkube://" + c.runID,
		}
		c.mu.Lock()
		c.state = v1.ContainerState{Terminated: term}
		c.running = false
		c.mu.Unlock()
		c.w.markDirty()

		if c.w.isStopping() || ctx.Err() != nil {
			return false
		}
		policy := c.w.currentPod().Spec.RestartPolicy
		if c.spec.RestartPolicy != nil {
			policy = v1.RestartPolicy(*c.spec.RestartPolicy)
		}
		if c.init && exitCode == 0 && (c.spec.RestartPolicy == nil) {
			return true
		}
		if policy == v1.RestartPolicyNever || (policy == v1.RestartPolicyOnFailure && exitCode == 0) {
			return exitCode == 0
		}
		// Crash-loop back-off: the first restart is immediate, then base, doubling to max;
		// reset after ten minutes of running.
		if finishedAt.Sub(startedAt.Time) > 10*time.Minute {
			backoff = 0
		}
		if backoff > 0 {
			c.mu.Lock()
			c.last = v1.ContainerState{Terminated: term}
			c.state = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backoff, c.spec.Name, c.w.currentPod().Name, c.w.currentPod().Namespace, c.w.uid),
			}}
			c.mu.Unlock()
			c.w.markDirty()
			c.event(v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.spec.Name, c.w.currentPod().Name)
		}
		if !c.sleepOrStop(ctx, backoff) {
			return false
		}
		if backoff == 0 {
			backoff = c.w.a.cfg.backoffBase
		} else {
			backoff = min(2*backoff, c.w.a.cfg.backoffMax)
		}
		c.mu.Lock()
		c.last = v1.ContainerState{Terminated: term}
		c.restarts++
		c.mu.Unlock()
	}
}

type procSpec struct {
	path string
	args []string
	env  []string
	dir  string
}

// runOnce starts the process, probes it, and stops it when the pod stops or its liveness
// or startup probe fails. It returns how the process ended.
func (c *container) runOnce(ctx context.Context, log klog.Logger, spec procSpec) (code int, reason, msg string, startedAt, finishedAt metav1.Time) {
	pod := c.w.currentPod()
	logPath := filepath.Join(c.w.a.cfg.logDir, fmt.Sprintf("%s_%s_%s.log", pod.Namespace, pod.Name, c.spec.Name))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	startedAt = metav1.Now()
	if err != nil {
		return 128, "StartError", err.Error(), startedAt, metav1.Now()
	}
	defer logFile.Close()
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Args[0] = spec.path
	cmd.Env = spec.env
	cmd.Dir = spec.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.mu.Lock()
	c.runID = fmt.Sprintf("%s-%s-%d", c.w.uid, c.spec.Name, c.restarts)
	c.mu.Unlock()
	if err := cmd.Start(); err != nil {
		c.event(v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 128, "StartError", err.Error(), startedAt, metav1.Now()
	}
	pid := cmd.Process.Pid
	pidFile := filepath.Join(c.w.dir, "containers", c.spec.Name+".pid")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	log.Info("container started", "pid", pid, "path", spec.path, "args", spec.args)
	c.event(v1.EventTypeNormal, "Started", "Started container %s (pid %d)", c.spec.Name, pid)

	hasReadiness := c.spec.ReadinessProbe != nil && !c.init
	hasStartup := c.spec.StartupProbe != nil && !c.init
	c.mu.Lock()
	c.pid = pid
	c.running = true
	c.started = !hasStartup
	c.readyOK = !hasReadiness
	c.state = v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: startedAt}}
	c.mu.Unlock()
	c.w.markDirty()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	probeCtx, cancelProbes := context.WithCancel(ctx)
	kill := make(chan string, 1) // a failed liveness/startup probe asks for a restart
	if !c.init {
		go c.probeAll(probeCtx, kill)
	}

	var waitErr error
	var killedBy string
	select {
	case waitErr = <-exited:
	case <-c.w.stopCh:
		waitErr = c.terminate(pid, exited, c.w.grace())
	case <-ctx.Done():
		waitErr = c.terminate(pid, exited, c.w.a.cfg.shutdownGrace)
	case why := <-kill:
		killedBy = why
		grace := 30 * time.Second
		if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
		}
		c.event(v1.EventTypeNormal, "Killing", "Container %s %s, will be restarted", c.spec.Name, why)
		waitErr = c.terminate(pid, exited, grace)
	}
	cancelProbes()
	// Whatever the main process left behind in its group goes with it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = os.Remove(pidFile)
	finishedAt = metav1.Now()
	c.mu.Lock()
	c.running = false
	c.readyOK = false
	c.mu.Unlock()

	code, reason = 0, "Completed"
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		ws := exitErr.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		default:
			code = ws.ExitStatus()
		}
		reason = "Error"
	} else if waitErr != nil {
		code, reason, msg = 128, "Error", waitErr.Error()
	}
	if killedBy != "" {
		msg = strings.TrimSpace(msg + " " + killedBy)
	}
	log.Info("container exited", "pid", pid, "exitCode", code)
	return code, reason, msg, startedAt, finishedAt
}

// terminate sends SIGTERM to the process group, and SIGKILL once grace has passed.
func (c *container) terminate(pid int, exited <-chan error, grace time.Duration) error {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
		klog.InfoS("grace period over, killing", "pid", pid, "container", c.spec.Name, "grace", grace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return <-exited
	}
}
