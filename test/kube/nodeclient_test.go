package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protowire"
)

// nodeClient speaks signet's node API (proto/signet/node/v1) the way a
// compromised node could: with its own node SVID, asking for whatever it
// likes. This module does not import signet's packages (its build list
// would change, and with it the cached API server binaries), so the few
// messages it needs are encoded here with protowire.
type nodeClient struct {
	addr  string
	roots *x509.CertPool
	key   *ecdsa.PrivateKey
	chain [][]byte // node SVID, leaf first
}

// rawCodec passes already-encoded messages through gRPC.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func newNodeClient(t *testing.T, addr, bundlePath string) *nodeClient {
	t.Helper()
	pemData, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		t.Fatal("no roots in the bundle")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &nodeClient{addr: addr, roots: roots, key: key}
}

// tlsConfig authenticates the CA by its chain to the bundle (its SPIFFE
// ID is a URI SAN, which crypto/tls does not check), presenting the node
// SVID once there is one.
func (c *nodeClient) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below against the bundle
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no server certificate")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			inter := x509.NewCertPool()
			for _, der := range raw[1:] {
				if ic, err := x509.ParseCertificate(der); err == nil {
					inter.AddCert(ic)
				}
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
	if c.chain != nil {
		cfg.Certificates = []tls.Certificate{{Certificate: c.chain, PrivateKey: c.key}}
	}
	return cfg
}

func (c *nodeClient) call(t *testing.T, method string, req []byte) ([]byte, error) {
	t.Helper()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConfig())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var resp []byte
	err = conn.Invoke(ctx, "/signet.node.v1.NodeService/"+method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	return resp, err
}

func (c *nodeClient) csr(t *testing.T) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// attest attests with a k8s_psat token (AttestNodeRequest: csr = 2,
// k8s_psat = 3 {cluster = 1, token = 2}) and keeps the node SVID
// (AttestNodeResponse.svid = 1, X509SVID.cert_chain = 2).
func (c *nodeClient) attest(t *testing.T, cluster, token string) {
	t.Helper()
	var psat []byte
	psat = protowire.AppendTag(psat, 1, protowire.BytesType)
	psat = protowire.AppendString(psat, cluster)
	psat = protowire.AppendTag(psat, 2, protowire.BytesType)
	psat = protowire.AppendString(psat, token)
	var req []byte
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, c.csr(t))
	req = protowire.AppendTag(req, 3, protowire.BytesType)
	req = protowire.AppendBytes(req, psat)
	resp, err := c.call(t, "AttestNode", req)
	if err != nil {
		t.Fatalf("attesting: %v", err)
	}
	for _, svid := range protoFields(t, resp)[1] {
		c.chain = protoFields(t, svid.bytes)[2].allBytes()
	}
	if len(c.chain) == 0 {
		t.Fatal("AttestNode returned no certificate")
	}
}

// mintResult is a MintX509SVIDResult: entry_id = 1, svid = 2, code = 3,
// message = 4.
type mintResult struct {
	EntryID string
	SVID    bool
	Code    uint64
	Message string
}

// mint asks for the SVID of one entry (MintX509SVIDsRequest.params = 1
// {entry_id = 1, csr = 2}).
func (c *nodeClient) mint(t *testing.T, entryID string) mintResult {
	t.Helper()
	var p []byte
	p = protowire.AppendTag(p, 1, protowire.BytesType)
	p = protowire.AppendString(p, entryID)
	p = protowire.AppendTag(p, 2, protowire.BytesType)
	p = protowire.AppendBytes(p, c.csr(t))
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, p)
	resp, err := c.call(t, "MintX509SVIDs", req)
	if err != nil {
		t.Fatalf("minting %s: %v", entryID, err)
	}
	results := protoFields(t, resp)[1]
	if len(results) != 1 {
		t.Fatalf("%d results for one CSR", len(results))
	}
	f := protoFields(t, results[0].bytes)
	r := mintResult{SVID: len(f[2]) > 0}
	if v := f[1]; len(v) > 0 {
		r.EntryID = string(v[0].bytes)
	}
	if v := f[3]; len(v) > 0 {
		r.Code = v[0].varint
	}
	if v := f[4]; len(v) > 0 {
		r.Message = string(v[0].bytes)
	}
	return r
}

// mintJWT asks for a JWT-SVID of one entry (MintJWTSVIDRequest:
// entry_id = 1, audience = 2) and returns its SPIFFE ID
// (MintJWTSVIDResponse.spiffe_id = 1) or the call's error.
func (c *nodeClient) mintJWT(t *testing.T, entryID, audience string) (string, error) {
	t.Helper()
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, entryID)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, audience)
	resp, err := c.call(t, "MintJWTSVID", req)
	if err != nil {
		return "", err
	}
	if v := protoFields(t, resp)[1]; len(v) > 0 {
		return string(v[0].bytes), nil
	}
	return "", nil
}

type field struct {
	bytes  []byte
	varint uint64
}

type fieldList []field

func (l fieldList) allBytes() [][]byte {
	var out [][]byte
	for _, f := range l {
		out = append(out, f.bytes)
	}
	return out
}

// protoFields decodes one message's fields by number.
func protoFields(t *testing.T, b []byte) map[protowire.Number]fieldList {
	t.Helper()
	out := map[protowire.Number]fieldList{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad protobuf tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var f field
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			f.bytes, b = v, b[n:]
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			f.varint, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			b = b[n:]
		}
		out[num] = append(out[num], f)
	}
	return out
}

func (r mintResult) String() string {
	return fmt.Sprintf("entry %s: code %d %q (SVID: %v)", r.EntryID, r.Code, r.Message, r.SVID)
}
