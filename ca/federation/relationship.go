package federation

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/store"
)

// Profile is how a bundle endpoint authenticates itself (SPIFFE Trust
// Domain and Bundle, section 5.2).
type Profile string

const (
	// ProfileHTTPSSPIFFE: the endpoint presents an X509-SVID, verified with
	// the bundle of its trust domain, and must have the relationship's
	// endpoint SPIFFE ID.
	ProfileHTTPSSPIFFE Profile = "https_spiffe"
	// ProfileHTTPSWeb: the endpoint presents a Web PKI certificate for
	// the URL's host.
	ProfileHTTPSWeb Profile = "https_web"
)

// Limits.
const (
	// MaxRelationships bounds the federated trust domains: every agent
	// receives every federated bundle.
	MaxRelationships = 256
	// MaxBundleBytes bounds a fetched or given bundle document: far above
	// any real bundle (a few roots and keys), far below what would hurt
	// the store or the agents.
	MaxBundleBytes = 256 << 10
	// MaxURLBytes bounds a bundle endpoint URL.
	MaxURLBytes = 2048
)

// Store meta keys. Relationships live in the store's meta bucket (each
// under metaPrefix + trust domain name, listed by metaIndex), so that any
// store backend holds them without a schema of their own.
const (
	metaIndex  = "federation_domains"
	metaPrefix = "federation/"
)

// Relationship is a trust domain this one federates with, and the last
// good bundle of it.
type Relationship struct {
	TrustDomain       spiffeid.TrustDomain
	BundleEndpointURL string
	Profile           Profile
	// EndpointSPIFFEID is the ID an https_spiffe endpoint must present;
	// zero for https_web.
	EndpointSPIFFEID spiffeid.ID
	CreatedAt        time.Time
	// Bundle is the last good bundle; nil until one was given or fetched.
	Bundle          *spiffebundle.Bundle
	BundleUpdatedAt time.Time
	// Revision is the store revision taken when the bundle last changed
	// (or the relationship was created): agents compare it to know their
	// copy is current.
	Revision int64
}

// record is a Relationship as stored (JSON).
type record struct {
	TrustDomain       string    `json:"trust_domain"`
	BundleEndpointURL string    `json:"bundle_endpoint_url"`
	Profile           Profile   `json:"profile"`
	EndpointSPIFFEID  string    `json:"endpoint_spiffe_id,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	// Bundle is the SPIFFE bundle document (JWKS).
	Bundle          json.RawMessage `json:"bundle,omitempty"`
	BundleUpdatedAt time.Time       `json:"bundle_updated_at,omitzero"`
	Revision        int64           `json:"revision"`
}

// Params are what an operator gives to create a relationship.
type Params struct {
	TrustDomain       string
	BundleEndpointURL string
	// Profile empty means ProfileHTTPSSPIFFE.
	Profile          string
	EndpointSPIFFEID string
	// InitialBundle is a SPIFFE bundle (JWKS) or PEM certificates;
	// optional.
	InitialBundle []byte
}

// Validate checks p against this server's trust domain own and returns
// the relationship it describes (without CreatedAt and Revision).
func (p Params) Validate(own spiffeid.TrustDomain) (*Relationship, error) {
	td, err := ParseTrustDomain("trust_domain", p.TrustDomain)
	if err != nil {
		return nil, err
	}
	if td == own {
		return nil, invalid("trust_domain", p.TrustDomain, "is this server's own trust domain")
	}
	r := &Relationship{TrustDomain: td, BundleEndpointURL: p.BundleEndpointURL, Profile: Profile(p.Profile)}
	if r.Profile == "" {
		r.Profile = ProfileHTTPSSPIFFE
	}
	if err := checkURL(p.BundleEndpointURL); err != nil {
		return nil, err
	}
	switch r.Profile {
	case ProfileHTTPSSPIFFE:
		if p.EndpointSPIFFEID == "" {
			return nil, invalid("endpoint_spiffe_id", "", "is required for the https_spiffe profile (the SPIFFE ID the endpoint presents, such as spiffe://%s/signet/server)", td.Name())
		}
		id, err := spiffeid.FromString(p.EndpointSPIFFEID)
		if err != nil {
			return nil, invalid("endpoint_spiffe_id", p.EndpointSPIFFEID, "is not a SPIFFE ID: %v", err)
		}
		r.EndpointSPIFFEID = id
	case ProfileHTTPSWeb:
		if p.EndpointSPIFFEID != "" {
			return nil, invalid("endpoint_spiffe_id", p.EndpointSPIFFEID, "is only for the https_spiffe profile; an https_web endpoint is authenticated by its Web PKI certificate")
		}
	default:
		return nil, invalid("profile", p.Profile, "must be https_spiffe or https_web")
	}
	if len(p.InitialBundle) > 0 {
		b, err := ParseBundle(td, p.InitialBundle)
		if err != nil {
			return nil, invalid("bundle", "", "%v", err)
		}
		r.Bundle = b
	}
	if r.Profile == ProfileHTTPSSPIFFE && r.EndpointSPIFFEID.TrustDomain() == td && r.Bundle == nil {
		return nil, invalid("bundle", "", "an https_spiffe endpoint in %s is verified with %s's roots: give its initial bundle (signet bundle show --format spiffe on the other side)", td.Name(), td.Name())
	}
	return r, nil
}

// ParseTrustDomain parses a trust domain name ("other.org") or its ID
// ("spiffe://other.org").
func ParseTrustDomain(field, s string) (spiffeid.TrustDomain, error) {
	if s == "" {
		return spiffeid.TrustDomain{}, invalid(field, s, "is required")
	}
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, invalid(field, s, "is not a trust domain name: %v", err)
	}
	if strings.HasPrefix(s, "spiffe://") && td.IDString() != s {
		return spiffeid.TrustDomain{}, invalid(field, s, "must be a trust domain, not a SPIFFE ID with a path")
	}
	return td, nil
}

func checkURL(s string) error {
	if s == "" {
		return invalid("bundle_endpoint_url", s, "is required")
	}
	if len(s) > MaxURLBytes {
		return invalid("bundle_endpoint_url", "", "is %d bytes, over the limit of %d", len(s), MaxURLBytes)
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid("bundle_endpoint_url", s, "%v", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return invalid("bundle_endpoint_url", s, "must be an https:// URL with a host (both profiles are served over TLS)")
	}
	if u.User != nil {
		return invalid("bundle_endpoint_url", s, "must not carry credentials")
	}
	return nil
}

// ParseBundle reads a bundle of trust domain td: a SPIFFE bundle document
// (JWKS) or PEM certificates. It refuses a document without X.509
// authorities and one whose authorities name another trust domain.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	if len(data) > MaxBundleBytes {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrMalformedBundle, len(data), MaxBundleBytes)
	}
	var b *spiffebundle.Bundle
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		var err error
		if b, err = spiffebundle.Parse(td, trimmed); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedBundle, err)
		}
	} else {
		var certs []*x509.Certificate
		for rest := trimmed; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrMalformedBundle, err)
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("%w: neither a SPIFFE bundle (JWKS) nor PEM certificates", ErrMalformedBundle)
		}
		b = spiffebundle.FromX509Authorities(td, certs)
	}
	if err := CheckBundle(td, b); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckBundle refuses a bundle without X.509 authorities (it would take
// away every root of td) and one with an authority whose SPIFFE ID (the
// URI SAN SPIFFE CA certificates carry) is in another trust domain.
func CheckBundle(td spiffeid.TrustDomain, b *spiffebundle.Bundle) error {
	auths := b.X509Authorities()
	if len(auths) == 0 {
		return fmt.Errorf("%w: no X.509 authorities", ErrMalformedBundle)
	}
	for _, c := range auths {
		if !c.IsCA {
			return fmt.Errorf("%w: X.509 authority %q is not a CA certificate", ErrMalformedBundle, c.Subject)
		}
		for _, u := range c.URIs {
			// The host of a spiffe URI is the trust domain, whatever its
			// path ("spiffe://example.com/" in the standard's example).
			if strings.EqualFold(u.Scheme, "spiffe") && !strings.EqualFold(u.Host, td.Name()) {
				return fmt.Errorf("%w: an X.509 authority is for %s, not %s", ErrWrongTrustDomain, u.Host, td.Name())
			}
		}
	}
	return nil
}

func metaKey(td spiffeid.TrustDomain) string { return metaPrefix + td.Name() }

// Get reads the relationship with td; ErrNotFound when there is none.
func Get(tx store.Tx, td spiffeid.TrustDomain) (*Relationship, error) {
	names, err := index(tx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(names, td.Name()) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, td.Name())
	}
	return read(tx, td.Name())
}

// List reads every relationship, ordered by trust domain.
func List(tx store.Tx) ([]*Relationship, error) {
	names, err := index(tx)
	if err != nil {
		return nil, err
	}
	out := make([]*Relationship, 0, len(names))
	for _, n := range names {
		r, err := read(tx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Bundles returns the federated bundles (of the relationships that have
// one), ordered by trust domain, and a version that changes whenever any
// of them does, so a stream can tell whether to send them again.
func Bundles(tx store.Tx) ([]*spiffebundle.Bundle, string, error) {
	rels, err := List(tx)
	if err != nil {
		return nil, "", err
	}
	var out []*spiffebundle.Bundle
	var version strings.Builder
	for _, r := range rels {
		if r.Bundle == nil {
			continue
		}
		out = append(out, r.Bundle)
		fmt.Fprintf(&version, "%s@%d ", r.TrustDomain.Name(), r.Revision)
	}
	return out, version.String(), nil
}

func index(tx store.Tx) ([]string, error) {
	v, err := tx.GetMeta(metaIndex)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapErr("reading the relationship index: %w", err)
	}
	var names []string
	if err := json.Unmarshal(v, &names); err != nil {
		return nil, wrapErr("decoding the relationship index: %w", err)
	}
	return names, nil
}

func putIndex(tx store.Tx, names []string) error {
	slices.Sort(names)
	data, err := json.Marshal(slices.Compact(names))
	if err != nil {
		return err
	}
	if err := tx.PutMeta(metaIndex, data); err != nil {
		return wrapErr("writing the relationship index: %w", err)
	}
	return nil
}

func read(tx store.Tx, name string) (*Relationship, error) {
	data, err := tx.GetMeta(metaPrefix + name)
	if err != nil {
		return nil, wrapErr("reading relationship %s: %w", name, err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, wrapErr("decoding relationship %s: %w", name, err)
	}
	td, err := spiffeid.TrustDomainFromString(rec.TrustDomain)
	if err != nil {
		return nil, wrapErr("relationship %s: %w", name, err)
	}
	r := &Relationship{
		TrustDomain: td, BundleEndpointURL: rec.BundleEndpointURL, Profile: rec.Profile,
		CreatedAt: rec.CreatedAt, BundleUpdatedAt: rec.BundleUpdatedAt, Revision: rec.Revision,
	}
	if rec.EndpointSPIFFEID != "" {
		if r.EndpointSPIFFEID, err = spiffeid.FromString(rec.EndpointSPIFFEID); err != nil {
			return nil, wrapErr("relationship %s: %w", name, err)
		}
	}
	if len(rec.Bundle) > 0 {
		if r.Bundle, err = spiffebundle.Parse(td, rec.Bundle); err != nil {
			return nil, wrapErr("relationship %s: stored bundle: %w", name, err)
		}
	}
	return r, nil
}

// put writes r and lists it in the index.
func put(tx store.Tx, r *Relationship) error {
	rec := record{
		TrustDomain: r.TrustDomain.Name(), BundleEndpointURL: r.BundleEndpointURL, Profile: r.Profile,
		CreatedAt: r.CreatedAt, BundleUpdatedAt: r.BundleUpdatedAt, Revision: r.Revision,
	}
	if !r.EndpointSPIFFEID.IsZero() {
		rec.EndpointSPIFFEID = r.EndpointSPIFFEID.String()
	}
	if r.Bundle != nil {
		doc, err := r.Bundle.Marshal()
		if err != nil {
			return wrapErr("encoding the bundle of %s: %w", r.TrustDomain.Name(), err)
		}
		rec.Bundle = doc
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := tx.PutMeta(metaKey(r.TrustDomain), data); err != nil {
		return wrapErr("writing relationship %s: %w", r.TrustDomain.Name(), err)
	}
	names, err := index(tx)
	if err != nil {
		return err
	}
	if !slices.Contains(names, r.TrustDomain.Name()) {
		if len(names) >= MaxRelationships {
			return invalid("trust_domain", r.TrustDomain.Name(), "at most %d trust domains may be federated", MaxRelationships)
		}
		return putIndex(tx, append(names, r.TrustDomain.Name()))
	}
	return nil
}

// remove takes td out of the index and clears its record.
func remove(tx store.Tx, td spiffeid.TrustDomain) error {
	names, err := index(tx)
	if err != nil {
		return err
	}
	i := slices.Index(names, td.Name())
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, td.Name())
	}
	// The meta bucket has no delete: the key stays with an empty
	// record that nothing reads, since the index no longer lists it.
	if err := tx.PutMeta(metaKey(td), []byte("{}")); err != nil {
		return wrapErr("clearing relationship %s: %w", td.Name(), err)
	}
	return putIndex(tx, slices.Delete(names, i, i+1))
}
