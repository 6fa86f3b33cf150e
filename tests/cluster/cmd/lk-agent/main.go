// Command lk-agent is the node agent of the local control plane: a small kubelet stand-in.
//
// It registers a Node, keeps its Lease fresh, and runs every container of the pods that the
// real kube-scheduler binds to it as a local process group. Image names map to executables
// (--image NAME=PATH, LOCALKUBE_IMAGES). Each pod gets its own loopback address as its pod IP,
// a kubeconfig with a TokenRequest token of its service account, env resolved from values,
// the downward API, Secrets and ConfigMaps, HTTP/TCP/exec probes, restarts with back-off per
// restartPolicy, and graceful deletion (SIGTERM, SIGKILL after the grace period, then the pod
// is deleted with grace 0). See tests/cluster/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

type imageFlag map[string]string

func (f imageFlag) String() string { return fmt.Sprint(map[string]string(f)) }
func (f imageFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("want NAME=PATH, got %q", item)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		f[name] = abs
	}
	return nil
}

type config struct {
	kubeconfig        string
	nodeName          string
	rootDir           string
	logDir            string
	images            imageFlag
	caFile            string
	apiserverURL      string
	podIPPrefix       string
	kubeletPort       int
	tlsCert, tlsKey   string
	clientCA          string
	backoffBase       time.Duration
	backoffMax        time.Duration
	shutdownGrace     time.Duration
	statusPeriod      time.Duration
	leaseDurationSecs int32
}

func main() {
	cfg := config{images: imageFlag{}}
	klog.InitFlags(nil)
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "target/localkube/pki/node.kubeconfig", "kubeconfig with the node's credentials (system:node:<name>)")
	flag.StringVar(&cfg.nodeName, "node-name", "localkube", "name of the Node to register")
	flag.StringVar(&cfg.rootDir, "root-dir", "target/localkube/agent", "state directory (one subdirectory per pod)")
	flag.StringVar(&cfg.logDir, "log-dir", "target/localkube/logs", "container logs: <ns>_<pod>_<container>.log")
	flag.Var(cfg.images, "image", "NAME=PATH: run PATH for images whose last path component (without tag or digest) is NAME; repeatable, comma-separated lists allowed; LOCALKUBE_IMAGES adds more")
	flag.StringVar(&cfg.caFile, "ca-file", "target/localkube/pki/ca.crt", "CA bundle that pods use to verify the apiserver")
	flag.StringVar(&cfg.apiserverURL, "apiserver-url", "", "apiserver URL written into pods' kubeconfigs (default: the server of --kubeconfig)")
	flag.StringVar(&cfg.podIPPrefix, "pod-ip-prefix", "127.1", "pods get addresses <prefix>.X.Y on the loopback interface")
	flag.IntVar(&cfg.kubeletPort, "kubelet-port", 10250, "HTTPS port on 127.0.0.1 for the apiserver's log requests (0: off)")
	flag.StringVar(&cfg.tlsCert, "tls-cert-file", "target/localkube/pki/node-serving.crt", "serving certificate of the kubelet port")
	flag.StringVar(&cfg.tlsKey, "tls-private-key-file", "target/localkube/pki/node-serving.key", "serving key of the kubelet port")
	flag.StringVar(&cfg.clientCA, "client-ca-file", "target/localkube/pki/ca.crt", "CA of the clients (the apiserver) allowed on the kubelet port")
	flag.DurationVar(&cfg.backoffBase, "restart-backoff", 10*time.Second, "first crash-loop back-off (doubles up to --max-restart-backoff)")
	flag.DurationVar(&cfg.backoffMax, "max-restart-backoff", 5*time.Minute, "longest crash-loop back-off")
	flag.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 10*time.Second, "when the agent stops: how long containers get between SIGTERM and SIGKILL")
	flag.DurationVar(&cfg.statusPeriod, "node-status-update-frequency", 10*time.Second, "how often the Lease is renewed and node status posted")
	flag.Parse()
	cfg.leaseDurationSecs = 40
	if env := os.Getenv("LOCALKUBE_IMAGES"); env != "" {
		if err := cfg.images.Set(env); err != nil {
			klog.Fatalf("LOCALKUBE_IMAGES: %v", err)
		}
	}
	for _, d := range []*string{&cfg.rootDir, &cfg.logDir, &cfg.caFile, &cfg.tlsCert, &cfg.tlsKey, &cfg.clientCA} {
		abs, err := filepath.Abs(*d)
		if err != nil {
			klog.Fatal(err)
		}
		*d = abs
	}

	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	if cfg.apiserverURL == "" {
		cfg.apiserverURL = restCfg.Host
	}
	restCfg.QPS, restCfg.Burst = 50, 100
	restCfg.UserAgent = "lk-agent/" + cfg.nodeName
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		klog.Fatal(err)
	}
	for _, d := range []string{cfg.rootDir, cfg.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			klog.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	a := newAgent(cfg, client)
	klog.InfoS("starting", "node", cfg.nodeName, "images", map[string]string(cfg.images))
	a.killLeftovers()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.run(ctx); err != nil {
			klog.ErrorS(err, "agent stopped")
		}
	}()
	select {
	case s := <-sigs:
		klog.InfoS("signal received, stopping containers", "signal", s)
	case <-done:
	}
	cancel()
	a.stopAll()
	klog.InfoS("stopped")
}
