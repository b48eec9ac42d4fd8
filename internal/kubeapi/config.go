package kubeapi

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// In-cluster credentials: what the kubelet mounts into every pod whose
// service account token is automounted.
const (
	InClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	InClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// maxKubeconfigBytes bounds a kubeconfig file.
const maxKubeconfigBytes = 4 << 20

// InCluster returns a client for the API server of the cluster the process
// runs in, as its pod's service account: the address from
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, the CA and the token
// from the service account volume (the token read again before each call).
func InCluster() (*Client, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("kubeapi: not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset): give a kubeconfig")
	}
	caPEM, err := os.ReadFile(InClusterCAFile)
	if err != nil {
		return nil, fmt.Errorf("kubeapi: reading the in-cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("kubeapi: %s holds no PEM certificate", InClusterCAFile)
	}
	if _, err := ReadTokenFile(InClusterTokenFile); err != nil {
		return nil, fmt.Errorf("kubeapi: reading the in-cluster token: %w", err)
	}
	return New(Config{
		Server:    "https://" + net.JoinHostPort(host, port),
		TLS:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TokenFile: InClusterTokenFile,
	})
}

// kubeconfig is the part of a kubeconfig file signet reads
// (decodeKubeconfig fills it).
type kubeconfig struct {
	CurrentContext string
	Clusters       []kcCluster
	Users          []kcUser
	Contexts       []kcContext
}

type kcCluster struct {
	Name    string
	Cluster struct {
		Server                   string
		CertificateAuthority     string
		CertificateAuthorityData string
		InsecureSkipTLSVerify    bool
		TLSServerName            string
	}
}

type kcUser struct {
	Name string
	User struct {
		Token                 string
		TokenFile             string
		ClientCertificate     string
		ClientCertificateData string
		ClientKey             string
		ClientKeyData         string
		// Exec and AuthProvider: whether the user has a plugin, which
		// signet does not run.
		Exec, AuthProvider bool
	}
}

type kcContext struct {
	Name    string
	Context struct {
		Cluster string
		User    string
	}
}

// LoadKubeconfig returns a client for the current context of the
// kubeconfig file at path. It understands a server with a CA (file or
// data), and a user with a token (or tokenFile) or a client certificate;
// exec and auth-provider plugins are refused by name. Relative file names
// are relative to the kubeconfig's directory, as kubectl takes them.
func LoadKubeconfig(path string) (*Client, error) {
	c, err := loadKubeconfig(path)
	if err != nil {
		return nil, fmt.Errorf("kubeapi: kubeconfig %s: %w", path, err)
	}
	return c, nil
}

func loadKubeconfig(path string) (*Client, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > maxKubeconfigBytes {
		return nil, fmt.Errorf("over %d bytes, not a kubeconfig", maxKubeconfigBytes)
	}
	return ParseKubeconfig(data, filepath.Dir(path))
}

// ParseKubeconfig is LoadKubeconfig on the file's content; dir resolves
// relative file names.
func ParseKubeconfig(data []byte, dir string) (*Client, error) {
	kc, err := decodeKubeconfig(data)
	if err != nil {
		return nil, fmt.Errorf("parsing: %v", err)
	}
	if kc.CurrentContext == "" {
		return nil, errors.New("no current-context")
	}
	ctxIdx := -1
	for i, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			ctxIdx = i
		}
	}
	if ctxIdx < 0 {
		return nil, fmt.Errorf("current-context %q is not among its contexts", kc.CurrentContext)
	}
	want := kc.Contexts[ctxIdx].Context
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	cfg := Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}
	found := false
	for _, c := range kc.Clusters {
		if c.Name != want.Cluster {
			continue
		}
		found = true
		cfg.Server = c.Cluster.Server
		cfg.TLS.ServerName = c.Cluster.TLSServerName
		caPEM, err := fileOrData("certificate-authority", abs(c.Cluster.CertificateAuthority), c.Cluster.CertificateAuthorityData)
		if err != nil {
			return nil, err
		}
		switch {
		case caPEM != nil:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(caPEM) {
				return nil, fmt.Errorf("cluster %q: its certificate authority holds no PEM certificate", c.Name)
			}
			cfg.TLS.RootCAs = pool
		case c.Cluster.InsecureSkipTLSVerify:
			cfg.TLS.InsecureSkipVerify = true
		}
	}
	if !found {
		return nil, fmt.Errorf("context %q names cluster %q, which is not among its clusters", kc.CurrentContext, want.Cluster)
	}
	found = false
	for _, u := range kc.Users {
		if u.Name != want.User {
			continue
		}
		found = true
		if u.User.Exec || u.User.AuthProvider {
			return nil, fmt.Errorf("user %q authenticates with an exec or auth-provider plugin, which signet does not run: use a token, a tokenFile or a client certificate", u.Name)
		}
		cfg.Token, cfg.TokenFile = u.User.Token, abs(u.User.TokenFile)
		if cfg.Token != "" {
			cfg.TokenFile = ""
		}
		certPEM, err := fileOrData("client-certificate", abs(u.User.ClientCertificate), u.User.ClientCertificateData)
		if err != nil {
			return nil, err
		}
		keyPEM, err := fileOrData("client-key", abs(u.User.ClientKey), u.User.ClientKeyData)
		if err != nil {
			return nil, err
		}
		if certPEM != nil || keyPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fmt.Errorf("user %q: client certificate: %v", u.Name, err)
			}
			cfg.TLS.Certificates = []tls.Certificate{pair}
		}
	}
	if !found && want.User != "" {
		return nil, fmt.Errorf("context %q names user %q, which is not among its users", kc.CurrentContext, want.User)
	}
	return New(cfg)
}

// fileOrData returns the content of a kubeconfig's "<key>" file or its
// base64 "<key>-data", nil when neither is set.
func fileOrData(key, file, data string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("%s-data is not base64: %v", key, err)
		}
		return b, nil
	}
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return b, nil
}
