package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultJWTSVIDTTL is the lifetime of a JWT-SVID whose params leave TTL
// zero. JWT-SVIDs are bearer tokens that cannot be revoked, so they are
// kept short, as SPIRE's default is.
const DefaultJWTSVIDTTL = 5 * time.Minute

// JWTSVIDParams describes the JWT-SVID to sign.
type JWTSVIDParams struct {
	// SPIFFEID is the token's subject. It must be in the CA's trust domain.
	SPIFFEID spiffeid.ID
	// Audience is required: the SPIFFE JWT-SVID standard makes aud
	// mandatory so a token cannot be replayed to another service.
	Audience []string
	// TTL is the requested lifetime; zero means DefaultJWTSVIDTTL. The
	// token never outlives the key that signs it.
	TTL time.Duration
}

// SignJWTSVID signs a JWT-SVID: a compact JWS with header alg (from the
// key: ES256 for P-256), kid (the key's ID) and typ JWT, and claims sub,
// aud, exp and iat. It returns the token and its expiry (exp, which has
// one-second precision).
//
// It fails with ErrNoJWTKey before SetJWTKey, ErrForeignTrustDomain,
// ErrInvalidParams or ErrAuthorityExpired. ctx is not used.
func (c *CA) SignJWTSVID(_ context.Context, p JWTSVIDParams) (string, time.Time, error) {
	key := c.jwt.Load()
	if key == nil {
		return "", time.Time{}, ErrNoJWTKey
	}
	if err := c.checkID(p.SPIFFEID); err != nil {
		return "", time.Time{}, err
	}
	if len(p.Audience) == 0 || slices.Contains(p.Audience, "") {
		return "", time.Time{}, fmt.Errorf("%w: audience is required", ErrInvalidParams)
	}
	ttl := p.TTL
	switch {
	case ttl == 0:
		ttl = DefaultJWTSVIDTTL
	case ttl < 0:
		return "", time.Time{}, fmt.Errorf("%w: negative ttl %v", ErrInvalidParams, ttl)
	}
	alg, err := jwtAlgorithm(key)
	if err != nil {
		return "", time.Time{}, err
	}

	now := c.clock.Now()
	exp := now.Add(ttl)
	if key.NotAfter.Before(exp) {
		exp = key.NotAfter
	}
	// Tokens carry whole seconds; truncate first so the returned expiry is
	// exactly the token's exp.
	exp = time.Unix(exp.Unix(), 0)
	if !exp.After(now) {
		return "", time.Time{}, fmt.Errorf("%w: JWT key %s expires at %v", ErrAuthorityExpired, key.ID, key.NotAfter)
	}

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: cryptosigner.Opaque(key.Signer), KeyID: key.ID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", time.Time{}, wrapErr("jwt signer: %w", err)
	}
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  p.SPIFFEID.String(),
		Audience: jwt.Audience(p.Audience),
		Expiry:   jwt.NewNumericDate(exp),
		IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
	if err != nil {
		return "", time.Time{}, wrapErr("signing jwt: %w", err)
	}
	return token, exp, nil
}

// jwtAlgorithm picks the JWS algorithm for the key. The JWT-SVID standard
// allows RS, ES and PS algorithms only, so Ed25519 keys are refused.
func jwtAlgorithm(k *JWTKey) (jose.SignatureAlgorithm, error) {
	switch pub := k.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", wrapErr("JWT key %s: unsupported key type %T", k.ID, k.Signer.Public())
}
