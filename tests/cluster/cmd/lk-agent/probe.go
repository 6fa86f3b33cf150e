package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
)

// probeAll runs the startup probe until it passes, then readiness and liveness probes, until
// ctx ends. A failed startup or liveness probe sends a reason on kill.
func (c *container) probeAll(ctx context.Context, kill chan<- string) {
	if p := c.spec.StartupProbe; p != nil {
		ok := c.probeLoop(ctx, p, "Startup", func(ok bool) bool { return !ok }, func() {
			select {
			case kill <- "failed startup probe":
			default:
			}
		})
		if !ok {
			return
		}
		c.mu.Lock()
		c.started = true
		c.mu.Unlock()
		c.w.markDirty()
	}
	if p := c.spec.ReadinessProbe; p != nil {
		go c.probeLoop(ctx, p, "Readiness", func(ok bool) bool {
			c.mu.Lock()
			changed := c.readyOK != ok
			c.readyOK = ok
			c.mu.Unlock()
			if changed {
				c.w.markDirty()
			}
			return true
		}, func() {})
	}
	if p := c.spec.LivenessProbe; p != nil {
		go c.probeLoop(ctx, p, "Liveness", func(bool) bool { return true }, func() {
			select {
			case kill <- "failed liveness probe":
			default:
			}
		})
	}
}

// probeLoop probes every period; result(ok) is called on each threshold crossing and says
// whether to go on; onFailure is called when failureThreshold consecutive probes failed.
// It returns true when it stopped because result returned false after a success.
func (c *container) probeLoop(ctx context.Context, p *v1.Probe, kind string, result func(ok bool) bool, onFailure func()) bool {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	if p.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	success, failure := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	if p.FailureThreshold == 0 {
		failure = 3
	}
	if !sleepCtx(ctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
		return false
	}
	var okRun, failRun int32
	for {
		err := c.probeOnce(ctx, p)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			okRun, failRun = okRun+1, 0
			if okRun >= success {
				if !result(true) {
					return true
				}
			}
		} else {
			okRun, failRun = 0, failRun+1
			klog.V(2).InfoS("probe failed", "kind", kind, "container", c.spec.Name, "err", err)
			if failRun == 1 || failRun == failure {
				c.event(v1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
			}
			if failRun >= failure {
				result(false)
				if kind != "Readiness" {
					onFailure()
					return false
				}
			}
		}
		if !sleepCtx(ctx, period) {
			return false
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *container) resolvePort(port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.spec.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no container port named %q", port.StrVal)
}

var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet's HTTPS probes
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (c *container) probeOnce(ctx context.Context, p *v1.Probe) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := c.resolvePort(g.Port)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = c.w.ip
		}
		scheme := "http"
		if g.Scheme == v1.URISchemeHTTPS {
			scheme = "https"
		}
		path := g.Path
		if path == "" || path[0] != '/' {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.36")
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := c.resolvePort(p.TCPSocket.Port)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = c.w.ip
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		if len(p.Exec.Command) == 0 {
			return fmt.Errorf("empty exec probe command")
		}
		spec, err := c.w.a.processSpec(ctx, c.w, &c.spec, c.imagePathOrEmpty())
		if err != nil {
			return err
		}
		path := p.Exec.Command[0]
		if base := p.Exec.Command[0]; base == imageName(c.spec.Image) {
			path = c.imagePathOrEmpty()
		}
		cmd := exec.CommandContext(ctx, path, p.Exec.Command[1:]...)
		cmd.Env, cmd.Dir = spec.env, spec.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("exec probe: %v: %s", err, out)
		}
		return nil
	}
	return fmt.Errorf("unsupported probe handler (only httpGet, tcpSocket and exec are)")
}

func (c *container) imagePathOrEmpty() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.imagePath
}
