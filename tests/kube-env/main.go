// Command kube-env runs a real kube-apiserver backed by a real, embedded etcd, both built from the
// official Go modules (see go.mod). It exists so that ferrolb's tests and demo talk to the same API
// server a kubeadm cluster runs, with real authentication (static admin token, service-account
// tokens signed by a generated key), real authorization (RBAC,Node) and TLS.
//
// Everything it needs is generated into --data-dir at start: a CA, a serving certificate whose SANs
// cover the addresses it serves on, the service-account key pair and the static token file. The
// caller writes its own kubeconfig from ca.crt and the token it passed in.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

type options struct {
	dataDir     string
	bind        string
	port        int
	etcdPort    int
	sans        string
	token       string
	serviceCIDR string
	verbosity   int
	advertise   string
	etcdServers string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "cert" {
		if err := certCommand(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "kube-env cert: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.dataDir, "data-dir", "", "directory for etcd data, certificates and keys (required)")
	flag.StringVar(&o.bind, "bind", "127.0.0.1", "address the kube-apiserver listens on (and advertises, unless --advertise)")
	flag.IntVar(&o.port, "port", 6443, "secure port of the kube-apiserver")
	flag.IntVar(&o.etcdPort, "etcd-port", 2379, "etcd client port on 127.0.0.1 (peer port is this + 1)")
	flag.StringVar(&o.sans, "san", "", "extra comma-separated IP addresses or DNS names for the serving certificate")
	flag.StringVar(&o.token, "token", "", "static bearer token of the admin user (group system:masters) (required)")
	flag.StringVar(&o.serviceCIDR, "service-cidr", "192.0.2.128/25,2001:db8:ffff::/108",
		"service cluster IP ranges (documentation ranges only: nothing routes to them in the lab)")
	flag.IntVar(&o.verbosity, "v", 0, "kube-apiserver log verbosity")
	flag.StringVar(&o.advertise, "advertise", "", "address advertised to the cluster (default: --bind)")
	flag.StringVar(&o.etcdServers, "etcd-servers", "",
		"use this etcd (another kube-env's, which also listens on its --bind) instead of starting one; "+
			"--data-dir/pki must then hold that kube-env's ca.crt, ca.key, sa.key and sa.pub")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "kube-env: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.dataDir == "" || o.token == "" {
		return fmt.Errorf("--data-dir and --token are required")
	}
	if strings.ContainsAny(o.token, ",\"\n") {
		return fmt.Errorf("--token must not contain commas, quotes or newlines")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	pki := filepath.Join(o.dataDir, "pki")
	// A restart on the same data directory (an API-server outage in a test) keeps the CA and the
	// service-account key, so existing kubeconfigs and tokens stay valid, as on a real cluster.
	if _, err := os.Stat(filepath.Join(pki, "sa.key")); err != nil {
		if err := writePKI(pki, o); err != nil {
			return fmt.Errorf("generating certificates: %w", err)
		}
	}
	// One more API server of the same cluster (--etcd-servers): the CA and the service-account
	// keys were copied in, the serving certificate is its own.
	if _, err := os.Stat(filepath.Join(pki, "serving.crt")); err != nil {
		if err := writeServing(pki, o); err != nil {
			return fmt.Errorf("generating the serving certificate: %w", err)
		}
	}
	tokens := filepath.Join(pki, "tokens.csv")
	line := fmt.Sprintf("%s,admin,admin-uid,\"system:masters\"\n", o.token)
	if err := os.WriteFile(tokens, []byte(line), 0o600); err != nil {
		return err
	}

	etcdServers := o.etcdServers
	if etcdServers == "" {
		etcd, err := startEtcd(filepath.Join(o.dataDir, "etcd"), o.bind, o.etcdPort)
		if err != nil {
			return fmt.Errorf("starting etcd: %w", err)
		}
		defer etcd.Close()
		etcdServers = fmt.Sprintf("http://127.0.0.1:%d", o.etcdPort)
	}
	advertise := o.advertise
	if advertise == "" {
		advertise = o.bind
	}

	issuer := "https://kubernetes.default.svc.cluster.local"
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs([]string{
		"--etcd-servers=" + etcdServers,
		"--bind-address=" + o.bind,
		fmt.Sprintf("--secure-port=%d", o.port),
		"--advertise-address=" + advertise,
		"--cert-dir=" + pki,
		"--tls-cert-file=" + filepath.Join(pki, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "serving.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC,Node",
		"--service-account-issuer=" + issuer,
		"--api-audiences=" + issuer,
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=" + o.serviceCIDR,
		"--allow-privileged=true",
		"--profiling=true", // /debug/pprof for the admin: how the API server spends its CPU in benchmarks
		"--shutdown-delay-duration=0s",
		fmt.Sprintf("--v=%d", o.verbosity),
	})
	return cmd.Execute()
}

// startEtcd runs etcd in this process, its clients served on 127.0.0.1 and, for the lab's other
// API servers (--etcd-servers), on bind (a lab namespace's address: nothing outside the lab).
func startEtcd(dir string, bind string, port int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Name = "kube-env"
	cfg.LogLevel = "error"
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port+1))
	cfg.ListenClientUrls = []url.URL{*client}
	if ip := net.ParseIP(bind); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		outer, _ := url.Parse(fmt.Sprintf("http://%s", net.JoinHostPort(bind, fmt.Sprint(port))))
		cfg.ListenClientUrls = append(cfg.ListenClientUrls, *outer)
	}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	// The lab's etcd is disposable: skip fsync so a 2-core CI machine spends its time on the test.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready within 60s")
	}
}

type pemFile struct {
	name, kind string
	der        []byte
}

func writePKI(dir string, o options) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferrolb-lab-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	files := []pemFile{
		{"ca.crt", "CERTIFICATE", caDER},
		{"ca.key", "EC PRIVATE KEY", caKeyDER},
		{"sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)},
		{"sa.pub", "PUBLIC KEY", saPub},
	}
	if err := writePEMs(dir, files); err != nil {
		return err
	}
	return writeServingWith(dir, o, ca, caKey)
}

func writePEMs(dir string, files []pemFile) error {
	for _, f := range files {
		b := pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der})
		if err := os.WriteFile(filepath.Join(dir, f.name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeServing signs a serving certificate with the CA already in dir.
func writeServing(dir string, o options) error {
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	return writeServingWith(dir, o, ca, caKey)
}

func writeServingWith(dir string, o options, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	now := time.Now()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	for _, s := range append([]string{o.bind, o.advertise}, strings.Split(o.sans, ",")...) {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if ip := net.ParseIP(s); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, s)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return err
	}
	return writePEMs(dir, []pemFile{
		{"serving.crt", "CERTIFICATE", srvDER},
		{"serving.key", "EC PRIVATE KEY", srvKeyDER},
	})
}

// loadCA reads ca.crt and ca.key (written by a kube-env start) from dir.
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, err
	}
	caBlock, _ := pem.Decode(caPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if caBlock == nil || keyBlock == nil {
		return nil, nil, fmt.Errorf("%s holds no PEM CA certificate and key", dir)
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	caKey, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return ca, caKey, nil
}

// certCommand signs a client certificate with the CA in --pki (written by a kube-env start):
// `kube-env cert --pki DIR --cn system:node:node-1 --org system:nodes --out PREFIX` writes
// PREFIX.crt and PREFIX.key.
func certCommand(args []string) error {
	fs := flag.NewFlagSet("cert", flag.ContinueOnError)
	pki := fs.String("pki", "", "directory holding ca.crt and ca.key (required)")
	cn := fs.String("cn", "", "common name: the user name the API server sees (required)")
	org := fs.String("org", "", "organisation: the group the API server sees")
	out := fs.String("out", "", "path prefix of the .crt and .key files to write (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pki == "" || *cn == "" || *out == "" {
		return fmt.Errorf("--pki, --cn and --out are required")
	}
	ca, caKey, err := loadCA(*pki)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	subject := pkix.Name{CommonName: *cn}
	if *org != "" {
		subject.Organization = []string{*org}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(*out+".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
