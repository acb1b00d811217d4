package mesh

import (
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"

	"filippo.io/edwards25519"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// ShortLivedKey returns k for a process that signs with it a few times and
// exits: a console's command (`ls`, `jump`), whose connection signs once
// (libp2p's TLS certificate; a host's TCP and QUIC transports each make
// one). crypto/ed25519 builds, at a process's first signature, a table of
// multiples of the base point (256 field inversions, 0.7 ms of CPU quiet,
// 1.3 ms at load on our 2-core machine: 4–5 % of a `jumpmesh ls`) that only
// pays for itself after some 15 signatures; an Ed25519 key from
// ShortLivedKey signs without it, ~60 µs a signature instead of ~16.
//
// The signatures are Ed25519's (RFC 8032), byte for byte what
// crypto/ed25519 makes (the scheme is deterministic; TestShortLivedKey
// compares them), computed with the same constant-time arithmetic
// (filippo.io/edwards25519, from which crypto/ed25519's own came).
// Everything else (type, raw bytes, public key, Equals) is k's. Other key
// types are returned as they are. Daemons keep k: they sign at every Noise
// handshake and signed record, where the table wins.
func ShortLivedKey(k crypto.PrivKey) crypto.PrivKey {
	ed, ok := k.(*crypto.Ed25519PrivateKey)
	if !ok {
		return k
	}
	return shortLivedEd25519{ed}
}

// shortLivedEd25519 is an Ed25519 key whose Sign computes R = r·B with a
// variable-base scalar multiplication (a table of 8 points of its own,
// no inversion) instead of crypto/ed25519's precomputed base-point table.
type shortLivedEd25519 struct {
	*crypto.Ed25519PrivateKey
}

// Sign is RFC 8032's Ed25519 signature of msg (section 5.1.6).
func (k shortLivedEd25519) Sign(msg []byte) ([]byte, error) {
	raw, err := k.Raw() // a copy: seed ‖ public key
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	if len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 key of %d bytes", len(raw))
	}
	h := sha512.Sum512(raw[:ed25519.SeedSize])
	defer clear(h[:])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	rh := sha512.New()
	rh.Write(h[32:])
	rh.Write(msg)
	r, err := edwards25519.NewScalar().SetUniformBytes(rh.Sum(make([]byte, 0, sha512.Size)))
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 0, ed25519.SignatureSize)
	sig = append(sig, new(edwards25519.Point).ScalarMult(r, edwards25519.NewGeneratorPoint()).Bytes()...)
	kh := sha512.New()
	kh.Write(sig) // R
	kh.Write(raw[ed25519.SeedSize:])
	kh.Write(msg)
	c, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(make([]byte, 0, sha512.Size)))
	if err != nil {
		return nil, err
	}
	return append(sig, edwards25519.NewScalar().MultiplyAdd(c, s, r).Bytes()...), nil
}
