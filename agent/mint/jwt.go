package mint

import "context"

// JWTCA is the call a JWT makes (agent/client.Client implements it).
type JWTCA interface {
	MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, error)
}

// JWT mints JWT-SVIDs on demand: unlike X509-SVIDs they are not queued,
// cached or rotated, because each is for the audience one workload asks
// for, and the key that signs them (the CA's JWT key) never leaves the CA.
// The Workload API calls it (it implements workloadapi.JWTMinter) after
// checking the request, and the workload's call waits for the CA's answer,
// bounded by client.CallTimeout.
type JWT struct {
	ca JWTCA
}

// NewJWT returns a JWT that asks ca.
func NewJWT(ca JWTCA) *JWT { return &JWT{ca: ca} }

// MintJWTSVID asks the CA for a JWT-SVID for one of this node's entries.
func (j *JWT) MintJWTSVID(ctx context.Context, entryID string, audience []string) (string, error) {
	return j.ca.MintJWTSVID(ctx, entryID, audience)
}
