package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
	"github.com/signet-mesh/signet/sds/internal/logkey"
)

// Resource names with a fixed meaning. Any other name is either a SPIFFE ID
// (that SVID) or spiffe://<trust domain> (that domain's bundle).
const (
	// DefaultName is the caller's default (first) SVID as a tls_certificate.
	DefaultName = "default"
	// RootCAName is the own trust domain's bundle as a validation_context
	// with trusted_ca.
	RootCAName = "ROOTCA"
	// AllBundlesName is every trust domain's bundle, as a validation_context
	// for Envoy's SPIFFE certificate validator.
	AllBundlesName = "ALL"
)

const (
	// SecretTypeURL is the type URL of the resources SDS serves.
	SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	// SPIFFEValidatorName is the name of Envoy's SPIFFE certificate
	// validator extension, used in the "ALL" secret.
	SPIFFEValidatorName = "envoy.tls.cert_validator.spiffe"
	// SPIFFEValidatorTypeURL is the type URL of that validator's
	// typed_config.
	SPIFFEValidatorTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
)

// ValidName reports whether name is a secret name the server understands:
// one of the fixed names, a SPIFFE ID, or spiffe://<trust domain>. A valid
// name may still not be available to a given caller.
func ValidName(name string) bool {
	switch name {
	case DefaultName, RootCAName, AllBundlesName:
		return true
	}
	_, err := spiffeid.FromString(name)
	return err == nil
}

// resource is one secret ready to send: its name, the version derived from
// its content, and its wire form.
type resource struct {
	name    string
	version string
	any     *anypb.Any
}

// build returns the secret named name as the snapshot has it, or false when
// the snapshot has no such secret for this caller. A secret that fails to
// encode (a broken SVID in the cache) is logged and treated as absent.
// Secrets that exist are memoized in the snapshot; absent names are not, so
// a caller asking for many made-up names cannot grow the memo.
func (s *Server) build(log *slog.Logger, snap *Snapshot, name string) (resource, bool) {
	if r, ok := snap.encoded.Load(name); ok {
		return r.(resource), true
	}
	secret, err := secretFor(snap, name)
	if err != nil {
		log.Error("encoding secret", logkey.Resource, name, logkey.Error, err)
		return resource{}, false
	}
	if secret == nil {
		return resource{}, false
	}
	r, err := newResource(secret)
	if err != nil {
		log.Error("encoding secret", logkey.Resource, name, logkey.Error, err)
		return resource{}, false
	}
	snap.encoded.Store(name, r)
	return r, true
}

// newResource encodes secret deterministically and names its version after
// the encoding: the first 8 bytes of its SHA-256, in hex. Equal content gives
// equal versions on every stream and across agent restarts.
func newResource(secret *envoypb.Secret) (resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(secret)
	if err != nil {
		return resource{}, fmt.Errorf("marshaling secret %q: %w", secret.GetName(), err)
	}
	sum := sha256.Sum256(b)
	return resource{
		name:    secret.GetName(),
		version: hex.EncodeToString(sum[:8]),
		any:     &anypb.Any{TypeUrl: SecretTypeURL, Value: b},
	}, nil
}

// setVersion is the version_info of a set of secrets, given as name ->
// resource version: a hash of the sorted names and versions, so it changes
// whenever any member changes, and equal sets have equal versions.
func setVersion(versions map[string]string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(versions)) {
		if v := versions[name]; v != "" {
			fmt.Fprintf(h, "%s\x00%s\n", name, v)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// secretFor builds the secret named name from snap. It returns nil, nil when
// snap has no such secret: the caller has no identity at all (no bundle
// either, as on the Workload API), is not entitled to the SVID, the trust
// domain is unknown, the bundle is not there yet, or the name is not valid.
func secretFor(snap *Snapshot, name string) (*envoypb.Secret, error) {
	if len(snap.Identities) == 0 {
		return nil, nil
	}
	switch name {
	case DefaultName:
		if len(snap.Identities) == 0 {
			return nil, nil
		}
		return tlsCertificate(name, snap.Identities[0].SVID)
	case RootCAName:
		return trustedCA(name, snap.Bundle)
	case AllBundlesName:
		return spiffeValidator(name, bundles(snap))
	}
	id, err := spiffeid.FromString(name)
	if err != nil {
		return nil, nil
	}
	if id.Path() == "" {
		for _, b := range bundles(snap) {
			if b.TrustDomain() == id.TrustDomain() {
				return trustedCA(name, b)
			}
		}
		return nil, nil
	}
	for _, identity := range snap.Identities {
		if identity.SVID != nil && identity.SVID.ID() == id {
			return tlsCertificate(name, identity.SVID)
		}
	}
	return nil, nil
}

// bundles returns the snapshot's non-empty bundles, own trust domain first,
// then federated ones sorted by trust domain; a federated bundle for the own
// trust domain is ignored.
func bundles(snap *Snapshot) []*x509bundle.Bundle {
	var out []*x509bundle.Bundle
	if snap.Bundle != nil && !snap.Bundle.Empty() {
		out = append(out, snap.Bundle)
	}
	seen := len(out)
	for _, b := range snap.FederatedBundles {
		if b == nil || b.Empty() || (snap.Bundle != nil && b.TrustDomain() == snap.Bundle.TrustDomain()) {
			continue
		}
		out = append(out, b)
	}
	slices.SortStableFunc(out[seen:], func(a, b *x509bundle.Bundle) int {
		return strings.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	return out
}

// tlsCertificate is an SVID as an Envoy tls_certificate: the PEM chain and the
// PEM PKCS#8 private key, inline.
func tlsCertificate(name string, svid SVID) (*envoypb.Secret, error) {
	if svid == nil {
		return nil, fmt.Errorf("secret %q: nil SVID", name)
	}
	certs, key, err := svid.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshaling SVID %s: %w", svid.ID(), err)
	}
	return &envoypb.Secret{
		Name: name,
		Type: &envoypb.Secret_TlsCertificate{TlsCertificate: &envoypb.TlsCertificate{
			CertificateChain: inline(certs),
			PrivateKey:       inline(key),
		}},
	}, nil
}

// trustedCA is a bundle as a validation_context with trusted_ca, or nil when
// there is no bundle.
func trustedCA(name string, b *x509bundle.Bundle) (*envoypb.Secret, error) {
	if b == nil || b.Empty() {
		return nil, nil
	}
	pem, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshaling bundle of %s: %w", b.TrustDomain(), err)
	}
	return &envoypb.Secret{
		Name: name,
		Type: &envoypb.Secret_ValidationContext{ValidationContext: &envoypb.CertificateValidationContext{
			TrustedCa: inline(pem),
		}},
	}, nil
}

// spiffeValidator is a validation_context that has Envoy validate peers with
// its SPIFFE certificate validator against every given trust domain, or nil
// when there are no bundles.
func spiffeValidator(name string, bs []*x509bundle.Bundle) (*envoypb.Secret, error) {
	if len(bs) == 0 {
		return nil, nil
	}
	cfg := &envoypb.SPIFFECertValidatorConfig{}
	for _, b := range bs {
		pem, err := b.Marshal()
		if err != nil {
			return nil, fmt.Errorf("marshaling bundle of %s: %w", b.TrustDomain(), err)
		}
		cfg.TrustDomains = append(cfg.TrustDomains, &envoypb.SPIFFECertValidatorConfig_TrustDomain{
			Name:        b.TrustDomain().Name(),
			TrustBundle: inline(pem),
		})
	}
	typed, err := anyOf(SPIFFEValidatorTypeURL, cfg)
	if err != nil {
		return nil, err
	}
	return &envoypb.Secret{
		Name: name,
		Type: &envoypb.Secret_ValidationContext{ValidationContext: &envoypb.CertificateValidationContext{
			CustomValidatorConfig: &envoypb.TypedExtensionConfig{
				Name:        SPIFFEValidatorName,
				TypedConfig: typed,
			},
		}},
	}, nil
}

// anyOf wraps m deterministically, so the enclosing secret's version depends
// only on content. typeURL is the Envoy name of m's message type (signet's
// wire-compatible messages have names of their own).
func anyOf(typeURL string, m proto.Message) (*anypb.Any, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshaling %T: %w", m, err)
	}
	return &anypb.Any{TypeUrl: typeURL, Value: b}, nil
}

func inline(b []byte) *envoypb.DataSource {
	return &envoypb.DataSource{Specifier: &envoypb.DataSource_InlineBytes{InlineBytes: b}}
}

// uniqueNames returns names sorted, without duplicates and empty strings.
func uniqueNames(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
