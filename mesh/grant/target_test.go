package grant_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// targetBody is an agentless grant: jumpoint j, target 10.20.0.5:22, no peer.
func (f fixture) targetBody(j peer.ID) *pb.JumpGrantBody {
	return &pb.JumpGrantBody{SiteId: []byte(f.site.PeerID()), Technician: []byte(f.tech), Jumpoint: []byte(j), Target: "10.20.0.5:22",
		Capabilities: grant.Forward, IssuedUnix: now.Unix(), ExpiresUnix: now.Add(time.Minute).Unix(), User: "alice"}
}

func TestVerifyTarget(t *testing.T) {
	f := newFixture(t)
	_, j := identity(t)
	_, other := identity(t)
	check := grant.TargetCheck{Site: f.site.PeerID(), Jumpoint: j, Technician: f.tech, Now: now}
	g, err := grant.Sign(f.targetBody(j), f.site)
	if err != nil {
		t.Fatal(err)
	}
	b, err := grant.VerifyTarget(g, check)
	if err != nil || b.GetTarget() != "10.20.0.5:22" {
		t.Fatalf("VerifyTarget = %v, %v", b, err)
	}
	refuse := func(name string, g *pb.JumpGrant, c grant.TargetCheck) {
		t.Helper()
		if _, err := grant.VerifyTarget(g, c); !catalog.HasCode(err, catalog.CodeGrantInvalid) {
			t.Errorf("%s: got %v, want grant_invalid", name, err)
		}
	}
	c := check
	c.Jumpoint = other
	refuse("another jumpoint", g, c)
	c = check
	c.Technician = other
	refuse("another technician", g, c)
	c = check
	c.Now = now.Add(2 * time.Minute)
	refuse("expired", g, c)
	forged, _ := grant.Sign(f.targetBody(j), mustSigner(t))
	refuse("another site's signature", &pb.JumpGrant{Body: g.GetBody(), Signature: forged.GetSignature()}, check)

	// A peer grant never passes as an agentless one.
	peerGrant, _ := grant.Sign(f.body(), f.site)
	refuse("peer grant", peerGrant, check)
	// Nor one naming both a peer and a target.
	both := f.targetBody(j)
	both.Peer = []byte(f.peer)
	bothGrant, _ := grant.Sign(both, f.site)
	refuse("peer and target", bothGrant, check)
	// Nor one naming a jumpoint without a target.
	noTarget := f.targetBody(j)
	noTarget.Target = ""
	g2, _ := grant.Sign(noTarget, f.site)
	refuse("no target", g2, check)
}

// An agentless grant is never accepted by a peer: not by Verify, not by
// the gate, even when its peer field names the peer.
func TestPeerRefusesTargetGrant(t *testing.T) {
	f := newFixture(t)
	_, j := identity(t)
	for _, withPeer := range []bool{false, true} {
		b := f.targetBody(j)
		b.Capabilities = grant.All
		if withPeer {
			b.Peer = []byte(f.peer)
		}
		g, err := grant.Sign(b, f.site)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := grant.Verify(g, f.check()); !catalog.HasCode(err, catalog.CodeGrantInvalid) {
			t.Errorf("Verify (peer field %v): %v, want grant_invalid", withPeer, err)
		}
		gate := grant.NewGate(grant.Limits{})
		if _, err := gate.Admit(g, f.check(), &conn{remote: f.tech}); !catalog.HasCode(err, catalog.CodeGrantInvalid) {
			t.Errorf("Admit (peer field %v): %v, want grant_invalid", withPeer, err)
		}
	}
}

func mustSigner(t *testing.T) interface {
	PeerID() peer.ID
	Sign([]byte) ([]byte, error)
} {
	s, _ := identity(t)
	return s
}
