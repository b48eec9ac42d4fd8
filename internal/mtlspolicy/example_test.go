package mtlspolicy_test

import (
	"fmt"

	"github.com/signet-mesh/signet/internal/mtlspolicy"
)

func ExampleEffective() {
	policies := []mtlspolicy.Policy{
		{Mode: mtlspolicy.Strict, ExemptPorts: []uint32{15021}},                             // the trust domain
		{Prefix: "spiffe://example.org/legacy/", Mode: mtlspolicy.Permissive},               // a path prefix
		{SPIFFEID: "spiffe://example.org/legacy/db", Mode: mtlspolicy.Strict, DryRun: true}, // one workload
		{SPIFFEID: "spiffe://example.org/legacy/db", Port: 9000, Mode: mtlspolicy.Disable},  // one of its ports
	}
	for _, q := range []struct {
		id   string
		port uint32
	}{
		{"spiffe://example.org/web", 8443},
		{"spiffe://example.org/web", 15021},
		{"spiffe://example.org/legacy/cache", 6379},
		{"spiffe://example.org/legacy/db", 5432},
		{"spiffe://example.org/legacy/db", 9000},
	} {
		mode, dryRun, exempt := mtlspolicy.Effective(policies, q.id, q.port)
		fmt.Println(q.id, q.port, mode, dryRun, exempt)
	}
	// Output:
	// spiffe://example.org/web 8443 STRICT false false
	// spiffe://example.org/web 15021 STRICT false true
	// spiffe://example.org/legacy/cache 6379 PERMISSIVE false false
	// spiffe://example.org/legacy/db 5432 STRICT true false
	// spiffe://example.org/legacy/db 9000 DISABLE false false
}
