package client

import (
	"encoding/pem"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/internal/sdstest"
	"github.com/signet-mesh/signet/sds/server"
)

func TestParseSecret(t *testing.T) {
	ca := sdstest.NewCA(t, "example.org")
	good := ca.SVID(t, "/web")
	chain, key, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.SVID(t, "/web").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	roots := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})

	tlsCert := func(chain, key []byte) *tlsv3.Secret {
		return &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inlineBytes(chain), PrivateKey: inlineBytes(key),
		}}}
	}
	trustedCA := func(ds *corev3.DataSource) *tlsv3.Secret {
		return &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: ds}}}
	}
	spiffe := func(name string, cfg proto.Message) *tlsv3.Secret {
		typed, err := anypb.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return &tlsv3.Secret{Name: "ALL", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: name, TypedConfig: typed},
		}}}
	}
	domains := func(names ...string) *tlsv3.SPIFFECertValidatorConfig {
		cfg := &tlsv3.SPIFFECertValidatorConfig{}
		for _, n := range names {
			cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: n, TrustBundle: inlineBytes(roots)})
		}
		return cfg
	}

	tests := []struct {
		name    string
		secret  *tlsv3.Secret
		wantErr string
		check   func(*testing.T, Secret)
	}{
		{
			name:   "valid tls_certificate",
			secret: tlsCert(chain, key),
			check: func(t *testing.T, s Secret) {
				if s.Certificate == nil || !s.Certificate.Leaf.Equal(good.Certificates[0]) {
					t.Errorf("certificate does not carry the SVID's leaf")
				}
			},
		},
		{name: "chain is not PEM", secret: tlsCert([]byte("not a certificate"), key), wantErr: "tls_certificate"},
		{name: "key does not match certificate", secret: tlsCert(chain, otherKey), wantErr: "private key does not match"},
		{name: "key is not PEM", secret: tlsCert(chain, []byte("garbage")), wantErr: "tls_certificate"},
		{name: "chain in a file", secret: tlsCert(nil, key), wantErr: "certificate_chain: no inline data"},
		{
			name:   "valid trusted_ca",
			secret: trustedCA(inlineBytes(roots)),
			check: func(t *testing.T, s Secret) {
				if len(s.Authorities) != 1 || !s.Authorities[0].Equal(ca.Root) {
					t.Errorf("authorities = %v, want the CA root", s.Authorities)
				}
			},
		},
		{name: "trusted_ca as inline string", secret: trustedCA(&corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(roots)}})},
		{name: "trusted_ca holds a key", secret: trustedCA(inlineBytes(slices.Concat(roots, key))), wantErr: `unexpected PEM block "PRIVATE KEY"`},
		{name: "trusted_ca trailing garbage", secret: trustedCA(inlineBytes(slices.Concat(roots, []byte("junk")))), wantErr: "trailing data"},
		{name: "trusted_ca not PEM", secret: trustedCA(inlineBytes([]byte("junk"))), wantErr: "no PEM certificates"},
		{name: "trusted_ca bad DER", secret: trustedCA(inlineBytes(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}))), wantErr: "parsing certificate"},
		{name: "empty validation_context", secret: trustedCA(nil), wantErr: "neither trusted_ca nor custom_validator_config"},
		{
			name:   "valid SPIFFE validator",
			secret: spiffe(server.SPIFFEValidatorName, domains("example.org", "federated.test")),
			check: func(t *testing.T, s Secret) {
				if s.Bundles == nil || s.Bundles.Len() != 2 {
					t.Fatalf("bundles = %v, want 2 trust domains", s.Bundles)
				}
			},
		},
		{name: "other validator", secret: spiffe("envoy.tls.cert_validator.default", domains("example.org")), wantErr: "validator"},
		{name: "SPIFFE validator without trust domains", secret: spiffe(server.SPIFFEValidatorName, domains()), wantErr: "no trust domains"},
		{name: "SPIFFE trust domain with scheme", secret: spiffe(server.SPIFFEValidatorName, domains("spiffe://example.org")), wantErr: "bare trust domain name"},
		{name: "SPIFFE trust domain twice", secret: spiffe(server.SPIFFEValidatorName, domains("example.org", "example.org")), wantErr: "listed twice"},
		{name: "SPIFFE config of the wrong type", secret: spiffe(server.SPIFFEValidatorName, &tlsv3.TlsCertificate{}), wantErr: "decoding SPIFFE validator config"},
		{name: "session ticket keys", secret: &tlsv3.Secret{Name: "x", Type: &tlsv3.Secret_SessionTicketKeys{}}, wantErr: "unsupported secret type"},
		{name: "no type", secret: &tlsv3.Secret{Name: "x"}, wantErr: "unsupported secret type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSecret(wire(t, tt.secret))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// wire encodes an Envoy secret, as built with go-control-plane's own types,
// and decodes it as signet's wire-compatible subset: the parser sees what
// it would receive from any SDS server.
func wire(tb testing.TB, s *tlsv3.Secret) *envoypb.Secret {
	tb.Helper()
	b, err := proto.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	out := &envoypb.Secret{}
	if err := proto.Unmarshal(b, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

func inlineBytes(b []byte) *corev3.DataSource {
	if b == nil {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/certs/chain.pem"}}
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}
