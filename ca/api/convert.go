package api

import (
	"crypto/x509"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// serialHex is the serial as the SVID index and the CLI show it.
func serialHex(c *x509.Certificate) string { return ca.FormatSerial(c.SerialNumber) }

func mustParse(der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func svidRecord(leaf *x509.Certificate, authorityID, nodeID, entryID string) *store.SVIDRecord {
	id := ""
	if len(leaf.URIs) == 1 {
		id = leaf.URIs[0].String()
	}
	return &store.SVIDRecord{
		Serial:      serialHex(leaf),
		SPIFFEID:    id,
		NodeID:      nodeID,
		EntryID:     entryID,
		AuthorityID: authorityID,
		NotBefore:   leaf.NotBefore,
		NotAfter:    leaf.NotAfter,
	}
}

func svidProto(id spiffeid.ID, chain []*x509.Certificate) *nodev1.X509SVID {
	out := &nodev1.X509SVID{SpiffeId: id.String(), ExpiresAt: chain[0].NotAfter.Unix()}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return out
}

func bundleProto(b *bundle.Bundle) *nodev1.Bundle {
	out := &nodev1.Bundle{TrustDomain: b.TrustDomain.Name(), Revision: b.Revision, RefreshHint: 60}
	for _, c := range b.X509Authorities {
		out.X509Authorities = append(out.X509Authorities, c.Raw)
	}
	for _, k := range b.JWTAuthorities {
		der, err := x509.MarshalPKIXPublicKey(k.PublicKey)
		if err != nil {
			continue
		}
		out.JwtAuthorities = append(out.JwtAuthorities, &nodev1.JWTKey{KeyId: k.ID, PublicKey: der, ExpiresAt: k.NotAfter.Unix()})
	}
	return out
}

func entryProto(e *store.Entry) *nodev1.Entry {
	return &nodev1.Entry{
		Id:             e.ID,
		SpiffeId:       e.SPIFFEID,
		ParentId:       e.ParentID,
		Selectors:      e.Selectors,
		X509TtlSeconds: int64(e.X509TTL.Seconds()),
		JwtTtlSeconds:  int64(e.JWTTTL.Seconds()),
		DnsNames:       e.DNSNames,
		Revision:       e.Revision,
		FederatesWith:  e.FederatesWith,
	}
}

func adminEntryProto(e *store.Entry) *adminv1.Entry {
	return &adminv1.Entry{
		Id:             e.ID,
		SpiffeId:       e.SPIFFEID,
		ParentId:       e.ParentID,
		Selectors:      e.Selectors,
		X509TtlSeconds: int64(e.X509TTL.Seconds()),
		JwtTtlSeconds:  int64(e.JWTTTL.Seconds()),
		DnsNames:       e.DNSNames,
		Revision:       e.Revision,
		CreatedAt:      e.CreatedAt.Unix(),
		FederatesWith:  e.FederatesWith,
	}
}

func isAlreadyExists(err error) bool { return errors.Is(err, store.ErrAlreadyExists) }
