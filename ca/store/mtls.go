package store

import (
	"errors"
	"fmt"
	"time"
)

// MTLSPolicy is an mTLS policy of the trust domain (see package
// internal/mtlspolicy for what the fields mean to enforcement). At most one
// of SPIFFEID and Prefix is set; neither is the trust-domain default.
type MTLSPolicy struct {
	ID       string `json:"id"`
	SPIFFEID string `json:"spiffe_id,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
	// Port is 0 for every port.
	Port uint32 `json:"port,omitempty"`
	// Mode is "STRICT", "PERMISSIVE" or "DISABLE".
	Mode        string    `json:"mode"`
	ExemptPorts []uint32  `json:"exempt_ports,omitempty"`
	DryRun      bool      `json:"dry_run,omitempty"`
	Revision    int64     `json:"revision"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func (t *boltTx) PutMTLSPolicy(p *MTLSPolicy) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("putting mtls policy %q: %w", p.ID, err)
	}
	if p.ID == "" {
		return errors.New("putting mtls policy: id is empty")
	}
	t.scope.touchAll()
	if err := put(t, bucketMTLSPolicies, p.ID, p); err != nil {
		return fmt.Errorf("putting mtls policy %q: %w", p.ID, err)
	}
	return nil
}

func (t *boltTx) GetMTLSPolicy(id string) (*MTLSPolicy, error) {
	p, err := get[MTLSPolicy](t, bucketMTLSPolicies, id)
	if err != nil {
		return nil, fmt.Errorf("getting mtls policy %q: %w", id, err)
	}
	return p, nil
}

func (t *boltTx) DeleteMTLSPolicy(id string) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("deleting mtls policy %q: %w", id, err)
	}
	t.scope.touchAll()
	if err := remove(t, bucketMTLSPolicies, id); err != nil {
		return fmt.Errorf("deleting mtls policy %q: %w", id, err)
	}
	return nil
}

func (t *boltTx) ListMTLSPolicies() ([]*MTLSPolicy, error) {
	ps, err := list[MTLSPolicy](t, bucketMTLSPolicies)
	if err != nil {
		return nil, fmt.Errorf("listing mtls policies: %w", err)
	}
	return ps, nil
}
