package jumpoint_test

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/allowlist"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// signTargetGrant signs a grant for technician to reach target through
// jumpoint j (and, when p is set, naming a peer too), valid from issued.
func signTargetGrant(t testing.TB, site signer, technician, j peer.ID, target string, p peer.ID, issued time.Time) *pb.JumpGrant {
	t.Helper()
	g, err := grant.Sign(&pb.JumpGrantBody{SiteId: []byte(site.PeerID()), Technician: []byte(technician), Jumpoint: []byte(j), Target: target,
		Peer: []byte(p), Capabilities: grant.Forward, IssuedUnix: issued.Unix(), ExpiresUnix: issued.Add(grant.MaxLifetime).Unix()}, site)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestAuthorizeAgentless is rule 4 (agentless targets), with real signed
// grants: a technician reaches exactly the target its grant names, through
// the jumpoint it names, while the ACL's allow list holds it; a grant of
// one kind never passes for the other.
func TestAuthorizeAgentless(t *testing.T) {
	site, otherSite := newSigner(t), newSigner(t)
	self, otherJumpoint := newID(t), newID(t)
	tech, tech2, removed, stranger, behind := newID(t), newID(t), newID(t), newID(t), newID(t)
	const behindAt = "192.168.1.10:4001"
	rules := func(allow ...string) jumpoint.Rules {
		rs, err := allowlist.ParseList(allow)
		if err != nil {
			t.Fatal(err)
		}
		acl, warnings, err := jumpoint.NewACL(&pb.JumpointACL{Name: "plant-floor", Technicians: [][]byte{[]byte(tech), []byte(tech2)},
			Peers: [][]byte{[]byte(behind)}, Allow: rs,
			SiteAddrs: mesh.EncodeAddrs([]ma.Multiaddr{ma.StringCast("/ip4/10.0.0.1/tcp/4830/p2p/" + site.PeerID().String())})}, site.PeerID())
		if err != nil || len(warnings) > 0 {
			t.Fatalf("NewACL: %v %v", err, warnings)
		}
		return jumpoint.Rules{Site: site.PeerID(), Self: self, ACL: acl, Now: now,
			PeerAddrs: func(p peer.ID) []string { return map[peer.ID][]string{behind: {behindAt}}[p] }}
	}
	r := rules("10.20.0.0/16:22,3389", "10.30.0.5:80", "0.0.0.0/0:443")
	empty := rules()
	noACL := r
	noACL.ACL = nil
	issued := now.Add(-5 * time.Second)
	ok := signTargetGrant(t, site, tech, self, "10.20.7.8:22", "", issued)

	cases := []struct {
		name   string
		rules  jumpoint.Rules
		remote peer.ID
		open   *pb.TunnelOpen
		reason string
		code   catalog.Code
	}{
		{"technician to the granted target", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: ok}, "", ""},
		{"the same target IPv4-mapped", r, tech, &pb.TunnelOpen{Target: "[::ffff:10.20.7.8]:22", Grant: ok}, "", ""},
		{"another target than the grant's", r, tech, &pb.TunnelOpen{Target: "10.20.7.9:22", Grant: ok}, jumpoint.ReasonTargetMismatch, catalog.CodePermissionDenied},
		{"another port than the grant's", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:3389", Grant: ok}, jumpoint.ReasonTargetMismatch, catalog.CodePermissionDenied},
		{"granted target outside the list", r, tech, &pb.TunnelOpen{Target: "10.21.0.1:22",
			Grant: signTargetGrant(t, site, tech, self, "10.21.0.1:22", "", issued)}, jumpoint.ReasonTargetNotAllowed, catalog.CodePermissionDenied},
		{"loopback not opened by 0.0.0.0/0", r, tech, &pb.TunnelOpen{Target: "127.0.0.1:443",
			Grant: signTargetGrant(t, site, tech, self, "127.0.0.1:443", "", issued)}, jumpoint.ReasonTargetNotAllowed, catalog.CodePermissionDenied},
		{"the list was emptied since the grant", empty, tech, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: ok}, jumpoint.ReasonTargetNotAllowed, catalog.CodePermissionDenied},
		{"grant for another jumpoint", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22",
			Grant: signTargetGrant(t, site, tech, otherJumpoint, "10.20.7.8:22", "", issued)}, jumpoint.ReasonGrantOtherJumpoint, catalog.CodeGrantInvalid},
		{"another technician's grant", r, tech2, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: ok}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"expired grant", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22",
			Grant: signTargetGrant(t, site, tech, self, "10.20.7.8:22", "", now.Add(-2*time.Minute))}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"grant of another site", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22",
			Grant: signTargetGrant(t, otherSite, tech, self, "10.20.7.8:22", "", issued)}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"forged body", r, tech, &pb.TunnelOpen{Target: "10.21.0.1:22", Grant: &pb.JumpGrant{Body: retarget(t, ok, "10.21.0.1:22"), Signature: ok.GetSignature()}},
			jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"removed technician", r, removed, &pb.TunnelOpen{Target: "10.20.7.8:22",
			Grant: signTargetGrant(t, site, removed, self, "10.20.7.8:22", "", issued)}, jumpoint.ReasonGrantNotTechnician, catalog.CodePermissionDenied},
		{"stranger with a stolen grant", r, stranger, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: ok}, jumpoint.ReasonGrantNotTechnician, catalog.CodePermissionDenied},
		{"a peer behind the jumpoint with a grant", r, behind, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: ok}, jumpoint.ReasonPeerTarget, catalog.CodePermissionDenied},
		{"before the first ACL", noACL, tech, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: ok}, jumpoint.ReasonNoACL, catalog.CodePermissionDenied},

		// Neither kind of grant passes for the other.
		{"peer grant to an agentless target", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22", Grant: signGrant(t, site, tech, behind, issued)},
			jumpoint.ReasonGrantTarget, catalog.CodePermissionDenied},
		{"peer grant to a listed target that is the peer's", rules(behindAt[:strings.IndexByte(behindAt, ':')] + ":4001"), tech,
			&pb.TunnelOpen{Target: behindAt, Grant: signGrant(t, site, tech, behind, issued)}, "", ""},
		{"target grant to the peer's address (not listed)", r, tech, &pb.TunnelOpen{Target: behindAt,
			Grant: signTargetGrant(t, site, tech, self, behindAt, "", issued)}, jumpoint.ReasonTargetNotAllowed, catalog.CodePermissionDenied},
		{"grant naming a peer and a target", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22",
			Grant: signTargetGrant(t, site, tech, self, "10.20.7.8:22", behind, issued)}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"grant naming a jumpoint but no target", r, tech, &pb.TunnelOpen{Target: "10.20.7.8:22",
			Grant: signTargetGrant(t, site, tech, self, "", "", issued)}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reason, err := c.rules.Authorize(c.remote, c.open)
			if reason != c.reason || catalog.CodeOf(err) != c.code || (err == nil) != (c.reason == "") {
				t.Fatalf("got reason %q, error %v (code %q); want reason %q, code %q", reason, err, catalog.CodeOf(err), c.reason, c.code)
			}
			if c.reason == jumpoint.ReasonTargetNotAllowed && !strings.Contains(err.Error(), "allow list") {
				t.Errorf("refusal does not name the allow list: %v", err)
			}
		})
	}
}

// retarget is g's body with another target (its signature no longer holds).
func retarget(t *testing.T, g *pb.JumpGrant, target string) []byte {
	t.Helper()
	b, err := grant.Parse(g)
	if err != nil {
		t.Fatal(err)
	}
	b.Target = target
	raw, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
