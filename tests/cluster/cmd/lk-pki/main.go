// Command lk-pki makes the certificates and kubeconfigs of the local control plane:
// a CA, the apiserver's serving certificate, the service-account key pair, client
// certificates for the admin, the controller-manager, the scheduler, the node agent and the
// apiserver's kubelet client and kube-proxy, and the node's serving certificate.
//
// It is idempotent: files that exist are kept, unless a certificate lacks an address it must
// now carry (-api-ip, -node-ip); if the CA is missing everything is made anew. Kubeconfigs are
// written again when the server URL changed.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type cert struct {
	name     string // file stem
	cn       string
	orgs     []string
	server   bool
	client   bool
	dnsNames []string
	ips      []net.IP
}

func main() {
	dir := flag.String("dir", "target/localkube/pki", "directory for certificates and keys")
	server := flag.String("server", "https://127.0.0.1:6443", "apiserver URL written into kubeconfigs")
	adminKubeconfig := flag.String("admin-kubeconfig", "target/localkube/kubeconfig", "where to write the admin kubeconfig")
	nodeName := flag.String("node-name", "localkube", "the node agent's node name (its client certificate is system:node:<name>)")
	apiIP := flag.String("api-ip", "", "another address of the apiserver for its certificate (besides 127.0.0.1)")
	nodeIP := flag.String("node-ip", "", "another address of the node for its serving certificate (besides 127.0.0.1)")
	flag.Parse()

	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}
	caCrt, caKeyPath := filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key")
	if !exists(caCrt) || !exists(caKeyPath) {
		// A new CA invalidates every other file.
		entries, _ := os.ReadDir(*dir)
		for _, e := range entries {
			_ = os.Remove(filepath.Join(*dir, e.Name()))
		}
		_ = os.Remove(*adminKubeconfig)
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "localkube-ca"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().AddDate(10, 0, 0),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		check(err)
		writePEM(caKeyPath, "EC PRIVATE KEY", marshalKey(key), 0o600)
		writePEM(caCrt, "CERTIFICATE", der, 0o644)
	}
	ca, caKey := loadCA(caCrt, caKeyPath)

	// Service-account token signing key pair.
	saKey, saPub := filepath.Join(*dir, "sa.key"), filepath.Join(*dir, "sa.pub")
	if !exists(saKey) || !exists(saPub) {
		key := newKey()
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		check(err)
		writePEM(saKey, "EC PRIVATE KEY", marshalKey(key), 0o600)
		writePEM(saPub, "PUBLIC KEY", pub, 0o644)
	}

	apiIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}
	nodeIPs := []net.IP{net.ParseIP("127.0.0.1")}
	if *apiIP != "" {
		apiIPs = append(apiIPs, parseIP(*apiIP))
	}
	if *nodeIP != "" {
		nodeIPs = append(nodeIPs, parseIP(*nodeIP))
	}
	certs := []cert{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			// 10.0.0.1 is the first address of --service-cluster-ip-range (the kubernetes Service);
			// nothing routes to it here, it only has to be in the certificate.
			ips: apiIPs},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, client: true},
		{name: "controller-manager", cn: "system:kube-controller-manager", client: true},
		{name: "scheduler", cn: "system:kube-scheduler", client: true},
		{name: "node", cn: "system:node:" + *nodeName, orgs: []string{"system:nodes"}, client: true},
		{name: "kube-proxy", cn: "system:kube-proxy", client: true},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"kubeadm:cluster-admins"}, client: true},
		{name: "node-serving", cn: *nodeName, server: true, dnsNames: []string{"localhost", *nodeName}, ips: nodeIPs},
	}
	for _, c := range certs {
		crtPath, keyPath := filepath.Join(*dir, c.name+".crt"), filepath.Join(*dir, c.name+".key")
		if exists(crtPath) && exists(keyPath) && hasIPs(crtPath, c.ips) {
			continue
		}
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: c.cn, Organization: c.orgs},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().AddDate(5, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			DNSNames:     c.dnsNames,
			IPAddresses:  c.ips,
		}
		if c.server {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}
		if c.client {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		check(err)
		writePEM(keyPath, "EC PRIVATE KEY", marshalKey(key), 0o600)
		writePEM(crtPath, "CERTIFICATE", der, 0o644)
	}

	kubeconfigs := map[string]string{
		*adminKubeconfig: "admin",
		filepath.Join(*dir, "controller-manager.kubeconfig"): "controller-manager",
		filepath.Join(*dir, "scheduler.kubeconfig"):          "scheduler",
		filepath.Join(*dir, "node.kubeconfig"):               "node",
		filepath.Join(*dir, "kube-proxy.kubeconfig"):         "kube-proxy",
	}
	for path, user := range kubeconfigs {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), "server: "+*server+"\n") {
			continue
		}
		writeKubeconfig(path, *server, caCrt, filepath.Join(*dir, user+".crt"), filepath.Join(*dir, user+".key"), user)
	}
}

func writeKubeconfig(path, server, caPath, crtPath, keyPath, user string) {
	b64 := func(p string) string {
		b, err := os.ReadFile(p)
		check(err)
		return base64.StdEncoding.EncodeToString(b)
	}
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: localkube
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: localkube
  context:
    cluster: localkube
    user: %s
    namespace: default
current-context: localkube
`, server, b64(caPath), user, b64(crtPath), b64(keyPath), user)
	check(os.MkdirAll(filepath.Dir(path), 0o755))
	check(os.WriteFile(path, []byte(content), 0o600))
}

// hasIPs reports whether the certificate at path carries every one of ips.
func hasIPs(path string, ips []net.IP) bool {
	b, err := os.ReadFile(path)
	check(err)
	block, _ := pem.Decode(b)
	if block == nil {
		return false
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	for _, want := range ips {
		if !slices.ContainsFunc(crt.IPAddresses, want.Equal) {
			return false
		}
	}
	return true
}

func parseIP(s string) net.IP {
	ip := net.ParseIP(s)
	if ip == nil {
		log.Fatalf("not an IP address: %q", s)
	}
	return ip
}

func loadCA(crtPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey) {
	crtPEM, err := os.ReadFile(crtPath)
	check(err)
	keyPEM, err := os.ReadFile(keyPath)
	check(err)
	cb, _ := pem.Decode(crtPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		log.Fatalf("cannot decode %s or %s; remove the pki directory to start over", crtPath, keyPath)
	}
	crt, err := x509.ParseCertificate(cb.Bytes)
	check(err)
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	check(err)
	return crt, key
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	return key
}

func marshalKey(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(key)
	check(err)
	return der
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	check(err)
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) {
	tmp := path + ".tmp"
	check(os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode))
	check(os.Rename(tmp, path))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
