package jumpoint_test

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// now is the time the table's grants and keys are judged at.
var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// signer is a key that signs: a site, or a member's identity.
type signer struct {
	*mesh.KeySigner
	key crypto.PrivKey
}

func newSigner(t testing.TB) signer {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return signer{s, key}
}

func newID(t testing.TB) peer.ID { return newSigner(t).PeerID() }

// signGrant signs a grant for technician to reach p, valid from issued for
// 60 s.
func signGrant(t testing.TB, site signer, technician, p peer.ID, issued time.Time) *pb.JumpGrant {
	t.Helper()
	g, err := grant.Sign(&pb.JumpGrantBody{SiteId: []byte(site.PeerID()), Technician: []byte(technician), Peer: []byte(p),
		Capabilities: grant.All, IssuedUnix: issued.Unix(), ExpiresUnix: issued.Add(grant.MaxLifetime).Unix()}, site)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// signKey signs an installer key naming jumpoints, valid from notBefore
// for a day.
func signKey(t testing.TB, site signer, notBefore time.Time, jumpoints ...peer.ID) string {
	t.Helper()
	var refs []installerkey.JumpointRef
	for i, j := range jumpoints {
		refs = append(refs, installerkey.JumpointRef{ID: j, Name: "jp-" + string(rune('a'+i)),
			Addrs: []ma.Multiaddr{ma.StringCast("/ip4/192.168.1.1/tcp/4833")}})
	}
	k, err := installerkey.Sign(&pb.InstallerKeyBody{InstallerId: "inst-1", SiteId: []byte(site.PeerID()),
		SiteAddrs:     installerkey.EncodeAddrs([]ma.Multiaddr{ma.StringCast("/ip4/10.0.0.1/tcp/4830")}),
		Jumpoints:     installerkey.EncodeJumpoints(refs),
		NotBeforeUnix: notBefore.Unix(), NotAfterUnix: notBefore.Add(24 * time.Hour).Unix()}, site)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAuthorize is the jumpoint's security core, rule by rule, with real
// signed grants and installer keys: who may reach what, and each refusal
// with its reason and catalog code.
func TestAuthorize(t *testing.T) {
	site, otherSite := newSigner(t), newSigner(t)
	self, otherJumpoint := newID(t), newID(t)
	relayID := newID(t)
	tech, tech2, removed := newID(t), newID(t), newID(t)
	behind, elsewhere, stranger := newID(t), newID(t), newID(t)

	const coordinator, relay = "10.0.0.1:4830", "10.0.0.2:4832"
	const behindAt, elsewhereAt = "192.168.1.10:4001", "192.168.1.20:4001"
	acl, warnings, err := jumpoint.NewACL(&pb.JumpointACL{
		Name:        "plant-floor",
		Technicians: [][]byte{[]byte(tech), []byte(tech2)},
		Peers:       [][]byte{[]byte(behind)},
		SiteAddrs: mesh.EncodeAddrs([]ma.Multiaddr{
			ma.StringCast("/ip4/10.0.0.1/tcp/4830/p2p/" + site.PeerID().String()),
			ma.StringCast("/ip4/10.0.0.1/udp/4830/quic-v1/p2p/" + site.PeerID().String()),
			ma.StringCast("/ip4/10.0.0.2/tcp/4832/p2p/" + relayID.String()),
		}),
		RefreshSeconds: 30,
	}, site.PeerID())
	if err != nil || len(warnings) > 0 {
		t.Fatalf("NewACL: %v %v", err, warnings)
	}
	listens := map[peer.ID][]string{behind: {behindAt}, elsewhere: {elsewhereAt}}
	rules := jumpoint.Rules{Site: site.PeerID(), Self: self, Coordinator: []string{coordinator}, ACL: acl,
		PeerAddrs: func(p peer.ID) []string { return listens[p] }, Now: now}
	noACL := rules
	noACL.ACL = nil

	key := signKey(t, site, now.Add(-time.Hour), otherJumpoint, self)
	okGrant := signGrant(t, site, tech, behind, now.Add(-5*time.Second))

	cases := []struct {
		name   string
		rules  jumpoint.Rules
		remote peer.ID
		open   *pb.TunnelOpen
		reason string // "" allowed
		code   catalog.Code
	}{
		// Rule 1: peers behind the jumpoint reach the site only.
		{"peer to the coordinator", rules, behind, &pb.TunnelOpen{Target: coordinator}, "", ""},
		{"peer to a relay", rules, behind, &pb.TunnelOpen{Target: relay}, "", ""},
		{"peer to a target outside the site", rules, behind, &pb.TunnelOpen{Target: elsewhereAt}, jumpoint.ReasonPeerTarget, catalog.CodePermissionDenied},
		{"peer to the coordinator's QUIC port over TCP", rules, behind, &pb.TunnelOpen{Target: "10.0.0.1:4831"}, jumpoint.ReasonPeerTarget, catalog.CodePermissionDenied},
		{"peer naming a host", rules, behind, &pb.TunnelOpen{Target: "coordinator.example.com:4830"}, jumpoint.ReasonBadTarget, catalog.CodeInvalidArgument},
		{"peer to port 0", rules, behind, &pb.TunnelOpen{Target: "10.0.0.1:0"}, jumpoint.ReasonBadTarget, catalog.CodeInvalidArgument},
		{"IPv4-mapped IPv6 is the same address", rules, behind, &pb.TunnelOpen{Target: "[::ffff:10.0.0.1]:4830"}, "", ""},
		{"peer before the first ACL", noACL, behind, &pb.TunnelOpen{Target: coordinator}, jumpoint.ReasonNoACL, catalog.CodePermissionDenied},
		{"peer not in the ACL", rules, elsewhere, &pb.TunnelOpen{Target: coordinator}, jumpoint.ReasonStranger, catalog.CodePermissionDenied},

		// Rule 2: an enrolling host with a key naming this jumpoint reaches the coordinator only.
		{"key to the coordinator", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: key}, "", ""},
		{"key to the coordinator before the first ACL", noACL, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: key}, "", ""},
		{"key to a relay", rules, stranger, &pb.TunnelOpen{Target: relay, InstallerKey: key}, jumpoint.ReasonKeyTarget, catalog.CodePermissionDenied},
		{"key to a host on the network", rules, stranger, &pb.TunnelOpen{Target: behindAt, InstallerKey: key}, jumpoint.ReasonKeyTarget, catalog.CodePermissionDenied},
		{"key for another jumpoint", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: signKey(t, site, now.Add(-time.Hour), otherJumpoint)}, jumpoint.ReasonKeyOtherJumpoint, catalog.CodePermissionDenied},
		{"key naming no jumpoint", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: signKey(t, site, now.Add(-time.Hour))}, jumpoint.ReasonKeyOtherJumpoint, catalog.CodePermissionDenied},
		{"expired key", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: signKey(t, site, now.Add(-25*time.Hour), self)}, jumpoint.ReasonKeyInvalid, catalog.CodeKeyExpired},
		{"key of another site", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: signKey(t, otherSite, now.Add(-time.Hour), self)}, jumpoint.ReasonKeyInvalid, catalog.CodeKeyOtherSite},
		{"key with a forged signature", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: forge(key)}, jumpoint.ReasonKeyInvalid, catalog.CodeKeyBadSignature},
		{"garbage key", rules, stranger, &pb.TunnelOpen{Target: coordinator, InstallerKey: "jmk1.nonsense"}, jumpoint.ReasonKeyInvalid, catalog.CodeKeyBadEncoding},

		// Rule 3: a technician with a grant reaches that peer only.
		{"technician to the peer", rules, tech, &pb.TunnelOpen{Target: behindAt, Grant: okGrant}, "", ""},
		{"technician to the coordinator", rules, tech, &pb.TunnelOpen{Target: coordinator, Grant: okGrant}, jumpoint.ReasonGrantTarget, catalog.CodePermissionDenied},
		{"technician to another host", rules, tech, &pb.TunnelOpen{Target: elsewhereAt, Grant: okGrant}, jumpoint.ReasonGrantTarget, catalog.CodePermissionDenied},
		{"expired grant", rules, tech, &pb.TunnelOpen{Target: behindAt, Grant: signGrant(t, site, tech, behind, now.Add(-2*time.Minute))}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"grant for a peer not behind this jumpoint", rules, tech, &pb.TunnelOpen{Target: elsewhereAt, Grant: signGrant(t, site, tech, elsewhere, now)}, jumpoint.ReasonGrantPeer, catalog.CodePermissionDenied},
		{"grant of another technician", rules, tech2, &pb.TunnelOpen{Target: behindAt, Grant: okGrant}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"grant signed by another site", rules, tech, &pb.TunnelOpen{Target: behindAt, Grant: signGrant(t, otherSite, tech, behind, now)}, jumpoint.ReasonGrantInvalid, catalog.CodeGrantInvalid},
		{"removed technician with a fresh grant", rules, removed, &pb.TunnelOpen{Target: behindAt, Grant: signGrant(t, site, removed, behind, now)}, jumpoint.ReasonGrantNotTechnician, catalog.CodePermissionDenied},
		{"grant before the first ACL", noACL, tech, &pb.TunnelOpen{Target: behindAt, Grant: okGrant}, jumpoint.ReasonNoACL, catalog.CodePermissionDenied},
		{"peer offline (no address known)", withAddrs(rules, nil), tech, &pb.TunnelOpen{Target: behindAt, Grant: okGrant}, jumpoint.ReasonGrantTarget, catalog.CodePermissionDenied},

		// Rule 4: everyone else.
		{"stranger without a key", rules, stranger, &pb.TunnelOpen{Target: coordinator}, jumpoint.ReasonStranger, catalog.CodePermissionDenied},
		{"stranger to a host on the network", rules, stranger, &pb.TunnelOpen{Target: behindAt}, jumpoint.ReasonStranger, catalog.CodePermissionDenied},
		{"technician without a grant", rules, tech, &pb.TunnelOpen{Target: behindAt}, jumpoint.ReasonStranger, catalog.CodePermissionDenied},
		{"stranger before the first ACL", noACL, stranger, &pb.TunnelOpen{Target: coordinator}, jumpoint.ReasonNoACL, catalog.CodePermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reason, err := c.rules.Authorize(c.remote, c.open)
			if reason != c.reason || catalog.CodeOf(err) != c.code || (err == nil) != (c.reason == "") {
				t.Fatalf("got reason %q, error %v (code %q); want reason %q, code %q", reason, err, catalog.CodeOf(err), c.reason, c.code)
			}
			if c.reason == jumpoint.ReasonStranger && !strings.Contains(err.Error(), "serves only its site's members") {
				t.Errorf("a stranger's refusal does not say whom the jumpoint serves: %v", err)
			}
		})
	}
}

func withAddrs(r jumpoint.Rules, addrs jumpoint.PeerAddrs) jumpoint.Rules {
	r.PeerAddrs = addrs
	return r
}

// forge flips the signature's first character.
func forge(key string) string {
	i := strings.LastIndexByte(key, '.') + 1
	c := byte('A')
	if key[i] == 'A' {
		c = 'B'
	}
	return key[:i] + string(c) + key[i+1:]
}

// TestNewACL: the coordinator's addresses are the ones ending in the
// site's /p2p/; only TCP ones are targets; an ACL without a coordinator
// address is refused (it would cut every peer off); bad entries are
// skipped with a warning.
func TestNewACL(t *testing.T) {
	site, relayID, p := newID(t), newID(t), newID(t)
	acl, warnings, err := jumpoint.NewACL(&pb.JumpointACL{
		Peers: [][]byte{[]byte(p), []byte("not a peer ID")},
		SiteAddrs: append(mesh.EncodeAddrs([]ma.Multiaddr{
			ma.StringCast("/ip6/2001:db8::1/tcp/4830/p2p/" + site.String()),
			ma.StringCast("/ip4/10.0.0.2/tcp/4832/p2p/" + relayID.String()),
			ma.StringCast("/ip4/10.0.0.3/tcp/4832"),
		}), []byte{0xff}),
	}, site)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 3 {
		t.Errorf("warnings %v, want 3 (a bad peer, an address without /p2p/, one that does not decode)", warnings)
	}
	if !acl.IsPeer(p) || len(acl.Peers) != 1 {
		t.Errorf("peers %v", acl.Peers)
	}
	if _, ok := acl.CoordinatorTargets["[2001:db8::1]:4830"]; !ok || len(acl.CoordinatorTargets) != 1 || len(acl.SiteTargets) != 2 {
		t.Errorf("coordinator %v, site %v", acl.CoordinatorTargets, acl.SiteTargets)
	}
	_, _, err = jumpoint.NewACL(&pb.JumpointACL{SiteAddrs: mesh.EncodeAddrs([]ma.Multiaddr{
		ma.StringCast("/ip4/10.0.0.2/tcp/4832/p2p/" + relayID.String())})}, site)
	if catalog.CodeOf(err) != catalog.CodeProtocol {
		t.Errorf("an ACL without the coordinator: %v, want protocol_error", err)
	}
}
