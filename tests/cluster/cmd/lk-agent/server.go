package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// serveKubeletAPI serves the part of the kubelet API that `kubectl logs` needs:
// GET /containerLogs/<namespace>/<pod>/<container>?follow=&tailLines=&limitBytes=, over
// HTTPS on 127.0.0.1:<kubelet-port>, to clients with a certificate of our CA (the apiserver).
func (a *agent) serveKubeletAPI(ctx context.Context) {
	caPEM, err := os.ReadFile(a.cfg.clientCA)
	if err != nil {
		klog.ErrorS(err, "kubelet API disabled")
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(a.cfg.tlsCert, a.cfg.tlsKey)
	if err != nil {
		klog.ErrorS(err, "kubelet API disabled")
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", a.containerLogs)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.kubeletPort)),
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServeTLS("", ""); err != nil && err != http.ErrServerClosed {
		klog.ErrorS(err, "kubelet API stopped")
	}
}

func (a *agent) containerLogs(w http.ResponseWriter, r *http.Request) {
	ns, pod, ctr := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	for _, s := range []string{ns, pod, ctr} {
		if s == "" || strings.Contains(s, "..") || strings.Contains(s, "/") {
			http.Error(w, "bad name", http.StatusBadRequest)
			return
		}
	}
	path := filepath.Join(a.cfg.logDir, fmt.Sprintf("%s_%s_%s.log", ns, pod, ctr))
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, fmt.Sprintf("no logs of container %s in pod %s/%s", ctr, ns, pod), http.StatusNotFound)
		return
	}
	defer f.Close()
	q := r.URL.Query()
	if tl := q.Get("tailLines"); tl != "" {
		if n, err := strconv.Atoi(tl); err == nil && n >= 0 {
			seekTail(f, n)
		}
	}
	var out io.Writer = w
	if lb := q.Get("limitBytes"); lb != "" {
		if n, err := strconv.ParseInt(lb, 10, 64); err == nil && n > 0 {
			out = &limitWriter{w: w, n: n}
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.Copy(out, f)
	if q.Get("follow") != "true" {
		return
	}
	flusher, _ := w.(http.Flusher)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := io.Copy(out, f); err != nil {
			return
		}
	}
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) {
	st, err := f.Stat()
	if err != nil {
		return
	}
	size := st.Size()
	if n == 0 {
		_, _ = f.Seek(0, io.SeekEnd)
		return
	}
	buf := make([]byte, 64*1024)
	lines := 0
	pos := size
	for pos > 0 {
		chunk := int64(len(buf))
		if pos < chunk {
			chunk = pos
		}
		pos -= chunk
		if _, err := f.ReadAt(buf[:chunk], pos); err != nil {
			return
		}
		for i := chunk - 1; i >= 0; i-- {
			if buf[i] == '\n' && pos+i != size-1 {
				lines++
				if lines == n {
					_, _ = f.Seek(pos+i+1, io.SeekStart)
					return
				}
			}
		}
	}
	_, _ = f.Seek(0, io.SeekStart)
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}
