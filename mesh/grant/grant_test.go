package grant_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func identity(t testing.TB) (*mesh.KeySigner, peer.ID) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.PeerID()
}

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type fixture struct {
	site       *mesh.KeySigner
	peer, tech peer.ID
}

func newFixture(t testing.TB) fixture {
	site, _ := identity(t)
	_, p := identity(t)
	_, tech := identity(t)
	return fixture{site: site, peer: p, tech: tech}
}

func (f fixture) body() *pb.JumpGrantBody {
	return &pb.JumpGrantBody{SiteId: []byte(f.site.PeerID()), Peer: []byte(f.peer), Technician: []byte(f.tech),
		Capabilities: grant.Exec | grant.Shell, IssuedUnix: now.Unix(), ExpiresUnix: now.Add(time.Minute).Unix(), User: "alice"}
}

func (f fixture) check() grant.Check {
	return grant.Check{Site: f.site.PeerID(), Peer: f.peer, Technician: f.tech, Capability: grant.Exec, Now: now}
}

func TestSignAndVerify(t *testing.T) {
	f := newFixture(t)
	g, err := grant.Sign(f.body(), f.site)
	if err != nil {
		t.Fatal(err)
	}
	b, err := grant.Verify(g, f.check())
	if err != nil {
		t.Fatal(err)
	}
	if b.GetUser() != "alice" || len(b.GetNonce()) != 16 || b.GetVersion() != grant.Version {
		t.Fatalf("body %v", b)
	}
	g2, _ := grant.Sign(f.body(), f.site)
	b2, _ := grant.Parse(g2)
	if string(b2.GetNonce()) == string(b.GetNonce()) {
		t.Fatal("two grants share a nonce")
	}
}

func TestVerifyRefusals(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	good, _ := grant.Sign(f.body(), f.site)
	long := f.body()
	long.ExpiresUnix = now.Add(2 * time.Minute).Unix()
	longG, _ := grant.Sign(long, f.site)
	flipped := &pb.JumpGrant{Body: good.GetBody(), Signature: append([]byte(nil), good.GetSignature()...)}
	flipped.Signature[5] ^= 0x10
	byOther, _ := grant.Sign(&pb.JumpGrantBody{SiteId: []byte(other.site.PeerID()), Peer: []byte(f.peer), Technician: []byte(f.tech),
		Capabilities: grant.All, IssuedUnix: now.Unix(), ExpiresUnix: now.Add(time.Minute).Unix()}, other.site)
	cases := []struct {
		name string
		g    *pb.JumpGrant
		mod  func(*grant.Check)
		code catalog.Code
	}{
		{"no grant", nil, nil, catalog.CodeGrantInvalid},
		{"forged signature", flipped, nil, catalog.CodeGrantInvalid},
		{"another site's key", byOther, nil, catalog.CodeGrantInvalid},
		{"for another peer", good, func(c *grant.Check) { c.Peer = other.peer }, catalog.CodeGrantInvalid},
		{"another technician", good, func(c *grant.Check) { c.Technician = other.tech }, catalog.CodeGrantInvalid},
		{"expired", good, func(c *grant.Check) { c.Now = now.Add(time.Minute) }, catalog.CodeGrantInvalid},
		{"lifetime over a minute", longG, nil, catalog.CodeGrantInvalid},
		{"capability not granted", good, func(c *grant.Check) { c.Capability = grant.Forward }, catalog.CodePermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chk := f.check()
			if c.mod != nil {
				c.mod(&chk)
			}
			_, err := grant.Verify(c.g, chk)
			if catalog.CodeOf(err) != c.code {
				t.Fatalf("got %v, want %s", err, c.code)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	g, _ := grant.Sign(fx.body(), fx.site)
	f.Add(g.GetBody(), g.GetSignature())
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x08, 0x01}, make([]byte, 64))
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		b, err := grant.Verify(&pb.JumpGrant{Body: body, Signature: sig}, fx.check())
		if err == nil && b.GetVersion() != grant.Version {
			t.Fatalf("accepted version %d", b.GetVersion())
		}
		if c := catalog.CodeOf(err); err != nil && c != catalog.CodeGrantInvalid && c != catalog.CodePermissionDenied {
			t.Fatalf("code %s", c)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	g, _ := grant.Sign(f.body(), f.site)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := grant.Verify(g, f.check()); err != nil {
			b.Fatal(err)
		}
	}
}
