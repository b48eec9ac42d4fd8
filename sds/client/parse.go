package client

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/server"
)

// Secret is one secret as the client accepted it. Exactly one of its fields
// besides Name is set, by the kind of secret.
type Secret struct {
	Name string
	// Certificate is a tls_certificate ("default" or a SPIFFE ID): the chain
	// and its private key, checked to match. Leaf is set.
	Certificate *tls.Certificate
	// Authorities are the trusted_ca of a validation_context ("ROOTCA" or
	// spiffe://<trust domain>).
	Authorities []*x509.Certificate
	// Bundles are the trust domains of a SPIFFE-validator
	// validation_context ("ALL").
	Bundles *x509bundle.Set
}

// parseResponse parses the secrets of resp that are among names, and fails
// if any of them is invalid or appears twice. Secrets not asked for are
// ignored, as the xDS protocol says clients do.
func parseResponse(resp *envoypb.DiscoveryResponse, names []string) (map[string]*entry, error) {
	if t := resp.GetTypeUrl(); t != server.SecretTypeURL {
		return nil, fmt.Errorf("response type_url %q, want %q", t, server.SecretTypeURL)
	}
	out := make(map[string]*entry)
	for _, a := range resp.GetResources() {
		if a.GetTypeUrl() != server.SecretTypeURL {
			return nil, fmt.Errorf("resource of type %q, want %q", a.GetTypeUrl(), server.SecretTypeURL)
		}
		msg := &envoypb.Secret{}
		if err := proto.Unmarshal(a.GetValue(), msg); err != nil {
			return nil, fmt.Errorf("decoding secret: %w", err)
		}
		name := msg.GetName()
		if !slices.Contains(names, name) {
			continue
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("secret %q appears twice", name)
		}
		s, err := parseSecret(msg)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		out[name] = &entry{secret: s, raw: a.GetValue()}
	}
	return out, nil
}

// parseSecret checks a secret the way Envoy would before using it.
func parseSecret(msg *envoypb.Secret) (Secret, error) {
	s := Secret{Name: msg.GetName()}
	switch t := msg.GetType().(type) {
	case *envoypb.Secret_TlsCertificate:
		chain, err := inline(t.TlsCertificate.GetCertificateChain())
		if err != nil {
			return Secret{}, fmt.Errorf("certificate_chain: %w", err)
		}
		key, err := inline(t.TlsCertificate.GetPrivateKey())
		if err != nil {
			return Secret{}, fmt.Errorf("private_key: %w", err)
		}
		cert, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return Secret{}, fmt.Errorf("tls_certificate: %w", err)
		}
		s.Certificate = &cert
	case *envoypb.Secret_ValidationContext:
		vc := t.ValidationContext
		switch {
		case vc.GetTrustedCa() != nil:
			pemBytes, err := inline(vc.GetTrustedCa())
			if err != nil {
				return Secret{}, fmt.Errorf("trusted_ca: %w", err)
			}
			if s.Authorities, err = parseCertificates(pemBytes); err != nil {
				return Secret{}, fmt.Errorf("trusted_ca: %w", err)
			}
		case vc.GetCustomValidatorConfig() != nil:
			set, err := parseSPIFFEValidator(vc.GetCustomValidatorConfig())
			if err != nil {
				return Secret{}, fmt.Errorf("custom_validator_config: %w", err)
			}
			s.Bundles = set
		default:
			return Secret{}, errors.New("validation_context has neither trusted_ca nor custom_validator_config")
		}
	default:
		return Secret{}, fmt.Errorf("unsupported secret type %T", t)
	}
	return s, nil
}

// parseSPIFFEValidator reads the trust domains of a SPIFFE validator
// configuration.
func parseSPIFFEValidator(cfg *envoypb.TypedExtensionConfig) (*x509bundle.Set, error) {
	if cfg.GetName() != server.SPIFFEValidatorName {
		return nil, fmt.Errorf("validator %q, want %q", cfg.GetName(), server.SPIFFEValidatorName)
	}
	typed := cfg.GetTypedConfig()
	if typed.GetTypeUrl() != server.SPIFFEValidatorTypeURL {
		return nil, fmt.Errorf("decoding SPIFFE validator config: typed_config of type %q, want %q", typed.GetTypeUrl(), server.SPIFFEValidatorTypeURL)
	}
	spiffe := &envoypb.SPIFFECertValidatorConfig{}
	if err := proto.Unmarshal(typed.GetValue(), spiffe); err != nil {
		return nil, fmt.Errorf("decoding SPIFFE validator config: %w", err)
	}
	if len(spiffe.GetTrustDomains()) == 0 {
		return nil, errors.New("SPIFFE validator config lists no trust domains")
	}
	set := x509bundle.NewSet()
	for _, d := range spiffe.GetTrustDomains() {
		td, err := spiffeid.TrustDomainFromString(d.GetName())
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", d.GetName(), err)
		}
		if td.Name() != d.GetName() {
			return nil, fmt.Errorf("trust domain %q: want a bare trust domain name, as Envoy matches it verbatim", d.GetName())
		}
		if set.Has(td) {
			return nil, fmt.Errorf("trust domain %q listed twice", td)
		}
		pemBytes, err := inline(d.GetTrustBundle())
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", td, err)
		}
		authorities, err := parseCertificates(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", td, err)
		}
		set.Add(x509bundle.FromX509Authorities(td, authorities))
	}
	return set, nil
}

// inline returns the bytes of an inline data source; SDS from the agent
// never points at files.
func inline(ds *envoypb.DataSource) ([]byte, error) {
	switch {
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes(), nil
	case ds.GetInlineString() != "":
		return []byte(ds.GetInlineString()), nil
	}
	return nil, errors.New("no inline data")
}

// parseCertificates parses a PEM bundle of one or more certificates. Any
// other block, or bytes that are not PEM, are an error.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificates")
	}
	if len(bytes.TrimSpace(b)) > 0 {
		return nil, errors.New("trailing data after the PEM certificates")
	}
	return certs, nil
}
