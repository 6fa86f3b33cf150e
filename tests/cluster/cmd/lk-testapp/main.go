// Command lk-testapp is the small program that the cluster tests run as image "lk-testapp".
//
// It serves /healthz and /readyz on LK_LISTEN (default $POD_IP:8080, else 127.0.0.1:8080),
// records the signals it gets, and can call the Kubernetes API with the kubeconfig the node
// agent gave it. Everything is configured by environment variables:
//
//	LK_LISTEN        address to serve on
//	LK_SIGNAL_DIR    on SIGTERM/SIGINT, append "<signal> <pod> <time>" to <dir>/<POD_NAME>
//	LK_IGNORE_TERM   "true": ignore SIGTERM (to test SIGKILL after the grace period)
//	LK_TERM_DELAY    how long to linger after SIGTERM before exiting 0 (Go duration)
//	LK_READY_AFTER   report not ready for this long after start (Go duration)
//	LK_EXIT_AFTER    exit on its own after this long, with LK_EXIT_CODE (default 1)
//	LK_ENV_FILE      write the environment and arguments as JSON to this file at start
//	LK_API_CHECKS    "VERB PATH;VERB PATH": call the API with $KUBECONFIG (else the in-cluster
//	                 service account) and write one JSON line per call ({"verb","path","code"})
//	                 to LK_RESULT_FILE and stdout
//	LK_FILES         comma-separated paths whose contents GET /inspect reports
//
// GET /inspect answers what the process is allowed, as the kubelet set it up: uid, gid, groups,
// the effective capabilities and seccomp mode (from /proc/self/status), whether / is writable,
// and the contents of LK_FILES (re-read on every request, so Secret volume updates show).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func duration(k string) time.Duration {
	d, err := time.ParseDuration(env(k, "0s"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", k, err)
		os.Exit(2)
	}
	return d
}

func main() {
	start := time.Now()
	pod := env("POD_NAME", env("HOSTNAME", "unknown"))
	listen := env("LK_LISTEN", env("POD_IP", "127.0.0.1")+":8080")
	readyAfter := duration("LK_READY_AFTER")
	var terminating atomic.Bool

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if terminating.Load() || time.Since(start) < readyAfter {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/inspect", inspect)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Fprintf(os.Stderr, "listen %s: %v\n", listen, err)
			os.Exit(3)
		}
	}()
	fmt.Printf("lk-testapp %s serving on %s\n", pod, listen)
	if f := os.Getenv("LK_ENV_FILE"); f != "" {
		b, _ := json.Marshal(map[string]any{"env": os.Environ(), "args": os.Args[1:]})
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err == nil {
			_ = os.Rename(tmp, f)
		}
	}

	if checks := os.Getenv("LK_API_CHECKS"); checks != "" {
		go apiChecks(checks)
	}
	var exitTimer <-chan time.Time
	if d := duration("LK_EXIT_AFTER"); d > 0 {
		exitTimer = time.After(d)
	}
	for {
		select {
		case <-exitTimer:
			code, _ := strconv.Atoi(env("LK_EXIT_CODE", "1"))
			fmt.Printf("exiting on my own with code %d\n", code)
			os.Exit(code)
		case s := <-sigs:
			recordSignal(pod, s)
			if s == syscall.SIGTERM && os.Getenv("LK_IGNORE_TERM") == "true" {
				fmt.Println("ignoring SIGTERM")
				continue
			}
			terminating.Store(true)
			time.Sleep(duration("LK_TERM_DELAY"))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			fmt.Printf("exiting after %v\n", s)
			os.Exit(0)
		}
	}
}

func recordSignal(pod string, s os.Signal) {
	line := fmt.Sprintf("%s %s %s\n", signalName(s), pod, time.Now().UTC().Format(time.RFC3339Nano))
	fmt.Print(line)
	dir := os.Getenv("LK_SIGNAL_DIR")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(dir+"/"+pod, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	_, _ = f.WriteString(line)
	_ = f.Sync()
	_ = f.Close()
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}

type result struct {
	Verb  string `json:"verb"`
	Path  string `json:"path"`
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
}

// apiChecks calls the API as the pod's service account and reports the HTTP status codes.
func apiChecks(spec string) {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeconfig: %v\n", err)
		os.Exit(4)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(4)
	}
	var lines []byte
	for _, item := range strings.Split(spec, ";") {
		verb, path, ok := strings.Cut(strings.TrimSpace(item), " ")
		if !ok {
			continue
		}
		r := result{Verb: verb, Path: path}
		var code int
		err := client.CoreV1().RESTClient().Verb(verb).AbsPath(path).Do(context.Background()).StatusCode(&code).Error()
		r.Code = code
		if err != nil {
			r.Error = err.Error()
			if st, ok := err.(apierrors.APIStatus); ok && r.Code == 0 {
				r.Code = int(st.Status().Code)
			}
		}
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		lines = append(append(lines, b...), '\n')
	}
	if f := os.Getenv("LK_RESULT_FILE"); f != "" {
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, lines, 0o644); err == nil {
			_ = os.Rename(tmp, f)
		}
	}
}

// inspect reports the process's identity and confinement and the files named in LK_FILES.
func inspect(w http.ResponseWriter, _ *http.Request) {
	groups, _ := os.Getgroups()
	report := map[string]any{"uid": os.Getuid(), "gid": os.Getgid(), "groups": groups}
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "CapEff" || k == "CapBnd" || k == "Seccomp" || k == "NoNewPrivs") {
				report[k] = strings.TrimSpace(v)
			}
		}
	}
	f, err := os.CreateTemp("/", "lk-testapp-")
	if err == nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		report["rootWritable"] = "yes"
	} else {
		report["rootWritable"] = err.Error()
	}
	files := map[string]string{}
	for _, path := range strings.Split(os.Getenv("LK_FILES"), ",") {
		if path = strings.TrimSpace(path); path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			files[path] = "error: " + err.Error()
			continue
		}
		files[path] = string(b)
	}
	report["files"] = files
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(report)
}
