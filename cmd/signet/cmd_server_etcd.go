package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/signet-mesh/signet/ca/server"
)

// The server's store keys: store (bolt|etcd), etcd_endpoints, etcd_prefix,
// etcd_ca/etcd_cert/etcd_key and server_name. They are checked here, so
// --check-config refuses what a start would, without reaching etcd.

// serverNameRE is what a replica name may be: it names files and etcd
// keys, and appears in logs and `node list`. Compiled on first use, not
// at every start of the binary.
var serverNameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
})

// storeConfig validates the store keys and sets out.Etcd and
// out.ServerName.
func (c serverConfig) storeConfig(out *server.Config) error {
	if c.ServerName != "" && !serverNameRE().MatchString(c.ServerName) {
		return fmt.Errorf("server_name %q: use 1 to 63 letters, digits, dots, dashes or underscores", c.ServerName)
	}
	out.ServerName = c.ServerName
	etcdKeys := len(c.EtcdEndpoints) > 0 || c.EtcdPrefix != "" || c.EtcdCA != "" || c.EtcdCert != "" || c.EtcdKey != ""
	switch c.Store {
	case "", "bolt":
		if etcdKeys {
			return fmt.Errorf("etcd_* keys are set but store is %q: set store: etcd (--store etcd) to keep the state in etcd", orBolt(c.Store))
		}
		return nil
	case "etcd":
	default:
		return fmt.Errorf("store %q: want bolt or etcd", c.Store)
	}
	if len(c.EtcdEndpoints) == 0 {
		return fmt.Errorf("store etcd needs etcd_endpoints (--etcd-endpoints https://etcd-0:2379,https://etcd-1:2379)")
	}
	for _, e := range c.EtcdEndpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("etcd_endpoints %q: want a URL like https://etcd-0:2379", e)
		}
	}
	if p := c.EtcdPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/")) {
		return fmt.Errorf("etcd_prefix %q: must start with / and not end with one (like /signet)", p)
	}
	tlsCfg, err := c.etcdTLS()
	if err != nil {
		return err
	}
	out.Etcd = &server.EtcdConfig{Endpoints: c.EtcdEndpoints, Prefix: c.EtcdPrefix, TLS: tlsCfg}
	return nil
}

func orBolt(s string) string {
	if s == "" {
		return "bolt"
	}
	return s
}

// etcdTLS builds the client TLS configuration from etcd_ca, etcd_cert and
// etcd_key; nil when none is set and every endpoint is http.
func (c serverConfig) etcdTLS() (*tls.Config, error) {
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		return nil, fmt.Errorf("etcd_cert and etcd_key must be given together")
	}
	https := false
	for _, e := range c.EtcdEndpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if c.EtcdCA == "" && c.EtcdCert == "" && !https {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.EtcdCA != "" {
		pemBytes, err := os.ReadFile(c.EtcdCA)
		if err != nil {
			return nil, fmt.Errorf("etcd_ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("etcd_ca %s: no PEM certificate in it", c.EtcdCA)
		}
		cfg.RootCAs = pool
	}
	if c.EtcdCert != "" {
		cert, err := tls.LoadX509KeyPair(c.EtcdCert, c.EtcdKey)
		if err != nil {
			return nil, fmt.Errorf("etcd_cert/etcd_key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
