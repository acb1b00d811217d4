package grant_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

type conn struct {
	closed bool
	remote peer.ID
}

func (c *conn) IsClosed() bool      { return c.closed }
func (c *conn) RemotePeer() peer.ID { return c.remote }

// admit presents g on c at t and wants code ("" for admitted).
func admit(t *testing.T, gate *grant.Gate, f fixture, g *pb.JumpGrant, c grant.Conn, at time.Time, code catalog.Code, what string) {
	t.Helper()
	chk := f.check()
	chk.Now = at
	if _, err := gate.Admit(g, chk, c); catalog.CodeOf(err) != code {
		t.Fatalf("%s: got %v, want code %q", what, err, code)
	}
}

func TestGateBindsAGrantToItsConnection(t *testing.T) {
	f := newFixture(t)
	g, _ := grant.Sign(f.body(), f.site)
	gate := grant.NewGate(grant.Limits{})
	relayed, direct, stranger := &conn{remote: f.tech}, &conn{remote: f.tech}, &conn{remote: peer.ID("someone else")}
	admit(t, gate, f, g, relayed, now, "", "first use")
	admit(t, gate, f, g, relayed, now.Add(2*time.Minute), "", "same connection, after expiry")
	admit(t, gate, f, g, stranger, now, catalog.CodeGrantInvalid, "another party's connection")
	// A hole punch adds a direct connection: the session's next channels
	// arrive there, even after expiry, while the relayed one is open...
	admit(t, gate, f, g, direct, now.Add(2*time.Minute), "", "the same technician's new connection")
	// ...and keep working when the relayed connection ends.
	relayed.closed = true
	admit(t, gate, f, g, direct, now.Add(2*time.Minute), "", "after the first connection closed")
	admit(t, gate, f, g, relayed, now, catalog.CodeGrantInvalid, "on a closed connection")
	// Once every connection is gone the grant is spent, even for its technician.
	direct.closed = true
	admit(t, gate, f, g, &conn{remote: f.tech}, now, catalog.CodeGrantInvalid, "after every connection closed")
	g2, _ := grant.Sign(f.body(), f.site)
	admit(t, gate, f, g2, &conn{remote: f.tech}, now.Add(time.Minute), catalog.CodeGrantInvalid, "first use after expiry")
}

// The attack of issue 11 (3), at the gate: a grant bound to a connection
// kept opening channels for as long as the connection lived.
func TestGateBoundsHowLongAGrantOpensChannels(t *testing.T) {
	f := newFixture(t)
	g, _ := grant.Sign(f.body(), f.site)
	gate := grant.NewGate(grant.Limits{OpenFor: 3 * time.Minute})
	c := &conn{remote: f.tech}
	first := now.Add(10 * time.Second)
	admit(t, gate, f, g, c, first, "", "first use")
	admit(t, gate, f, g, c, first.Add(3*time.Minute-time.Second), "", "just inside the bound")
	admit(t, gate, f, g, c, first.Add(3*time.Minute), catalog.CodeGrantExpired, "at the bound")
	admit(t, gate, f, g, c, first.Add(6*time.Minute-time.Second), catalog.CodeGrantExpired, "twice the bound")
	admit(t, gate, f, g, c, first.Add(time.Hour), catalog.CodeGrantInvalid, "an hour later: forgotten, so expired")
	// A fresh grant is good again.
	fresh := f.body()
	fresh.IssuedUnix, fresh.ExpiresUnix = first.Add(time.Hour).Unix(), first.Add(time.Hour+time.Minute).Unix()
	g2, _ := grant.Sign(fresh, f.site)
	admit(t, gate, f, g2, c, first.Add(time.Hour), "", "a fresh grant")
	if grant.DefaultLimits().OpenFor != grant.DefaultOpenFor || grant.NewGate(grant.Limits{}).Limits().OpenFor != grant.DefaultOpenFor {
		t.Fatal("zero limits are not the defaults")
	}
}

func TestGateRevocation(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	gate := grant.NewGate(grant.Limits{})
	sign := func(fx fixture, issued time.Time) *pb.JumpGrant {
		b := fx.body()
		b.SiteId, b.Peer = []byte(f.site.PeerID()), []byte(f.peer)
		b.IssuedUnix, b.ExpiresUnix = issued.Unix(), issued.Add(time.Minute).Unix()
		g, _ := grant.Sign(b, f.site)
		return g
	}
	c, oc := &conn{remote: f.tech}, &conn{remote: other.tech}
	bound := sign(f, now)      // in use when the revocation comes
	unseen := sign(f, now)     // issued before it, not used yet
	others := sign(other, now) // another technician's
	admit(t, gate, f, bound, c, now, "", "before the revocation")
	admit(t, gate, f, others, oc, now, "", "another technician, before")

	gate.Revoke(grant.Revocation{Technicians: []peer.ID{f.tech}, IssuedThrough: now.Unix()}, now)
	admit(t, gate, f, bound, c, now.Add(time.Second), catalog.CodeGrantRevoked, "a bound grant after its revocation")
	admit(t, gate, f, unseen, c, now.Add(time.Second), catalog.CodeGrantRevoked, "an unseen grant issued before the revocation")
	admit(t, gate, f, others, oc, now.Add(time.Second), "", "another technician is not revoked")
	// The coordinator issues later grants after the revocation: good.
	admit(t, gate, f, sign(f, now.Add(time.Second)), c, now.Add(time.Second), "", "a grant issued after the revocation")
	b, _ := grant.Parse(bound)
	if catalog.CodeOf(gate.Revoked(b)) != catalog.CodeGrantRevoked {
		t.Fatal("Revoked does not report the revoked grant")
	}

	// All: every technician's grants up to then.
	gate.Revoke(grant.Revocation{All: true, IssuedThrough: now.Add(time.Second).Unix()}, now.Add(time.Second))
	admit(t, gate, f, others, oc, now.Add(2*time.Second), catalog.CodeGrantRevoked, "all: another technician's bound grant")
	admit(t, gate, f, sign(f, now.Add(2*time.Second)), c, now.Add(2*time.Second), "", "all: a later grant")
	if !(grant.Revocation{All: true, IssuedThrough: 5}).Covers(other.tech, 5) || (grant.Revocation{Technicians: []peer.ID{f.tech}, IssuedThrough: 5}).Covers(f.tech, 6) {
		t.Fatal("Covers")
	}
}
