package sync

import (
	"crypto"
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/agent/client"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// decoder turns the CA's bundle messages into bundles, reusing what the
// previous bundle message decoded to: a bundle change adds or drops one
// root among those the agent holds, and every reconnect sends them all
// again, so most certificates and keys in a message were parsed before.
// Parsing them again costs each agent CPU and garbage at the moment the
// whole fleet receives the same bundle. Only the follow goroutine uses
// it.
type decoder struct {
	// last maps the DER of each root and JWT key of the last bundle
	// message to what it decoded to (*x509.Certificate or
	// crypto.PublicKey); next collects the current message's.
	last, next map[string]any
}

// begin starts a message: what it does not use again is forgotten at done.
func (d *decoder) begin() { d.next = make(map[string]any, len(d.last)) }

// done makes the current message's decodings the ones the next reuses.
func (d *decoder) done() { d.last, d.next = d.next, nil }

// cert parses (or reuses) one root.
func (d *decoder) cert(der []byte) (*x509.Certificate, error) {
	if c, ok := d.last[string(der)].(*x509.Certificate); ok {
		d.next[string(der)] = c
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	d.next[string(der)] = c
	return c, nil
}

// key parses (or reuses) one JWT authority's public key.
func (d *decoder) key(der []byte) (crypto.PublicKey, error) {
	// The "k" prefix keeps keys apart from certificates of the same bytes.
	k := "k" + string(der)
	if pub, ok := d.last[k]; ok {
		d.next[k] = pub
		return pub, nil
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	d.next[k] = pub
	return pub, nil
}

// x509Bundle is client.BundleFromProto with reuse.
func (d *decoder) x509Bundle(td spiffeid.TrustDomain, b *nodev1.Bundle) (*x509bundle.Bundle, error) {
	return client.BundleFromProtoWith(td, b, d.cert)
}

// jwtBundle decodes b's JWT authorities with d; one that cannot be read
// is skipped with an error log (fed: b is a federated bundle).
func (s *Syncer) jwtBundle(d *decoder, td spiffeid.TrustDomain, b *nodev1.Bundle, fed bool) *jwtbundle.Bundle {
	jb := jwtbundle.New(td)
	for _, k := range b.GetJwtAuthorities() {
		pub, err := d.key(k.GetPublicKey())
		if err != nil {
			if fed {
				s.log.Error("ignoring bad federated JWT authority", logkey.TrustDomain, td.Name(), logkey.KeyID, k.GetKeyId(), logkey.Error, err)
			} else {
				s.log.Error("ignoring bad JWT authority", logkey.KeyID, k.GetKeyId(), logkey.Error, err)
			}
			continue
		}
		jb.AddJWTAuthority(k.GetKeyId(), pub)
	}
	return jb
}
