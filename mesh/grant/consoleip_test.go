package grant_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// signIP signs, with f's site key for f's peer, a grant for tech issued at
// issued that names consoleIP.
func signIP(t *testing.T, f fixture, tech peer.ID, issued time.Time, consoleIP string) *pb.JumpGrant {
	t.Helper()
	b := f.body()
	b.Technician, b.ConsoleIp = []byte(tech), consoleIP
	b.IssuedUnix, b.ExpiresUnix = issued.Unix(), issued.Add(time.Minute).Unix()
	g, err := grant.Sign(b, f.site)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// wantConsoleIP checks what gate says for tech: want "" for none.
func wantConsoleIP(t *testing.T, gate *grant.Gate, tech peer.ID, want, what string) {
	t.Helper()
	ip, ok := gate.ConsoleIP(tech)
	switch {
	case want == "" && ok:
		t.Fatalf("%s: ConsoleIP = %s, want none", what, ip)
	case want != "" && (!ok || ip != netip.MustParseAddr(want)):
		t.Fatalf("%s: ConsoleIP = %s, %v; want %s", what, ip, ok, want)
	}
}

func TestGateConsoleIP(t *testing.T) {
	f := newFixture(t)
	clock := mesh.NewManualClock(now)
	gate := grant.NewGate(grant.Limits{OpenFor: 3 * time.Minute}, grant.WithClock(clock))
	c := &conn{remote: f.tech}
	wantConsoleIP(t, gate, f.tech, "", "before any grant")
	admit(t, gate, f, signIP(t, f, f.tech, now, "203.0.113.7"), c, now, "", "first grant")
	wantConsoleIP(t, gate, f.tech, "203.0.113.7", "first grant")

	// A later grant (the console moved, or asked again): the most recent wins.
	clock.Advance(time.Minute)
	admit(t, gate, f, signIP(t, f, f.tech, now.Add(time.Minute), "2001:db8::5"), c, clock.Now(), "", "second grant")
	wantConsoleIP(t, gate, f.tech, "2001:db8::5", "second grant")

	// Each grant gives its IP for OpenFor after its own first use.
	clock.Advance(2 * time.Minute) // 3 min after the first use: first is past its bound
	wantConsoleIP(t, gate, f.tech, "2001:db8::5", "first past its bound")
	clock.Advance(time.Minute) // 3 min after the second's first use
	wantConsoleIP(t, gate, f.tech, "", "both past their bound")
}

// A bound grant whose connections all closed opens no channels: no IP.
func TestGateConsoleIPNeedsAnOpenConnection(t *testing.T) {
	f := newFixture(t)
	gate := grant.NewGate(grant.Limits{}, grant.WithClock(mesh.NewManualClock(now)))
	c := &conn{remote: f.tech}
	admit(t, gate, f, signIP(t, f, f.tech, now, "203.0.113.7"), c, now, "", "grant")
	wantConsoleIP(t, gate, f.tech, "203.0.113.7", "connection open")
	c.closed = true
	wantConsoleIP(t, gate, f.tech, "", "connection closed")
}

func TestGateConsoleIPRevoked(t *testing.T) {
	f := newFixture(t)
	clock := mesh.NewManualClock(now)
	gate := grant.NewGate(grant.Limits{}, grant.WithClock(clock))
	c := &conn{remote: f.tech}
	admit(t, gate, f, signIP(t, f, f.tech, now, "203.0.113.7"), c, now, "", "grant")
	gate.Revoke(grant.Revocation{Technicians: []peer.ID{f.tech}, IssuedThrough: now.Unix()}, now)
	wantConsoleIP(t, gate, f.tech, "", "revoked")
	// A grant issued after the revocation is good again.
	later := now.Add(time.Second)
	clock.Set(later)
	admit(t, gate, f, signIP(t, f, f.tech, later, "198.51.100.9"), c, later, "", "later grant")
	wantConsoleIP(t, gate, f.tech, "198.51.100.9", "grant after the revocation")
	gate.Revoke(grant.Revocation{All: true, IssuedThrough: later.Unix()}, later)
	wantConsoleIP(t, gate, f.tech, "", "revoked with all")
}

// Attacks: a console gets a peer to aim packets only at the IP the
// coordinator signed for that console — not another technician's, not one
// in a grant the gate refused, not one it wrote itself.
func TestGateConsoleIPAttacks(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	gate := grant.NewGate(grant.Limits{}, grant.WithClock(mesh.NewManualClock(now)))
	oc := &conn{remote: other.tech}
	admit(t, gate, f, signIP(t, f, other.tech, now, "203.0.113.7"), oc, now, "", "another technician's grant")
	wantConsoleIP(t, gate, other.tech, "203.0.113.7", "its own technician")
	wantConsoleIP(t, gate, f.tech, "", "another technician's grant")

	// Shown on the attacker's own connection: refused (made out to another
	// technician), so nothing is learnt.
	c := &conn{remote: f.tech}
	admit(t, gate, f, signIP(t, f, other.tech, now, "192.0.2.1"), c, now, catalog.CodeGrantInvalid, "a grant for another technician")
	// Signed by someone else than the site (the console itself).
	forged := signIP(t, fixture{site: other.site, peer: f.peer, tech: f.tech}, f.tech, now, "192.0.2.1")
	admit(t, gate, f, forged, c, now, catalog.CodeGrantInvalid, "a grant the console signed itself")
	// Expired before its first use.
	admit(t, gate, f, signIP(t, f, f.tech, now.Add(-2*time.Minute), "192.0.2.1"), c, now, catalog.CodeGrantInvalid, "an expired grant")
	wantConsoleIP(t, gate, f.tech, "", "only refused grants")
}

func TestGateConsoleIPGarbage(t *testing.T) {
	f := newFixture(t)
	for _, ip := range []string{"", "garbage", "203.0.113.7:4001", "fe80::1%eth0", "0.0.0.0", "::", "203.0.113.7/32", "/ip4/203.0.113.7"} {
		gate := grant.NewGate(grant.Limits{}, grant.WithClock(mesh.NewManualClock(now)))
		admit(t, gate, f, signIP(t, f, f.tech, now, ip), &conn{remote: f.tech}, now, "", "grant with console_ip "+ip)
		wantConsoleIP(t, gate, f.tech, "", "console_ip "+ip)
	}
	// IPv4 in IPv6 reads as IPv4 (the address the peer's IPv4 socket sees).
	gate := grant.NewGate(grant.Limits{}, grant.WithClock(mesh.NewManualClock(now)))
	admit(t, gate, f, signIP(t, f, f.tech, now, "::ffff:203.0.113.7"), &conn{remote: f.tech}, now, "", "mapped")
	wantConsoleIP(t, gate, f.tech, "203.0.113.7", "IPv4 in IPv6")
}

// checkShown calls CheckConsoleIP for a grant shown by tech at at and
// wants ip (code "") or a refusal with code.
func checkShown(t *testing.T, gate *grant.Gate, f fixture, g *pb.JumpGrant, tech peer.ID, at time.Time, ip string, code catalog.Code, what string) {
	t.Helper()
	c := f.check()
	c.Technician, c.Now = tech, at
	got, err := gate.CheckConsoleIP(g, c)
	if catalog.CodeOf(err) != code || (code == "" && got != netip.MustParseAddr(ip)) {
		t.Fatalf("%s: %s, %v; want %q, code %q", what, got, err, ip, code)
	}
}

// A grant shown in a probe answer gives its console IP without being used
// up; nothing else a console could show gives one.
func TestGateCheckConsoleIP(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	gate := grant.NewGate(grant.Limits{OpenFor: 3 * time.Minute}, grant.WithClock(mesh.NewManualClock(now)))
	g := signIP(t, f, f.tech, now, "203.0.113.7")
	checkShown(t, gate, f, g, f.tech, now, "203.0.113.7", "", "an unused grant")
	checkShown(t, gate, f, g, f.tech, now, "203.0.113.7", "", "shown again")
	c := &conn{remote: f.tech}
	admit(t, gate, f, g, c, now, "", "the session opens with it afterwards")
	// Admitted: usable past its own expiry, up to the gate's bound.
	checkShown(t, gate, f, g, f.tech, now.Add(2*time.Minute), "203.0.113.7", "", "admitted, past its expiry")
	checkShown(t, gate, f, g, f.tech, now.Add(3*time.Minute), "", catalog.CodeGrantExpired, "admitted, past the bound")

	checkShown(t, gate, f, signIP(t, f, f.tech, now.Add(-2*time.Minute), "203.0.113.7"), f.tech, now, "", catalog.CodeGrantInvalid, "expired, never admitted")
	checkShown(t, gate, f, signIP(t, f, other.tech, now, "192.0.2.1"), f.tech, now, "", catalog.CodeGrantInvalid, "another technician's grant")
	forged := signIP(t, fixture{site: other.site, peer: f.peer, tech: f.tech}, f.tech, now, "192.0.2.1")
	checkShown(t, gate, f, forged, f.tech, now, "", catalog.CodeGrantInvalid, "signed by the console itself")
	other2 := signIP(t, fixture{site: f.site, peer: other.peer, tech: f.tech}, f.tech, now, "192.0.2.1")
	checkShown(t, gate, f, other2, f.tech, now, "", catalog.CodeGrantInvalid, "a grant for another peer")
	checkShown(t, gate, f, signIP(t, f, f.tech, now, "garbage"), f.tech, now, "", catalog.CodeGrantInvalid, "garbage console_ip")
	checkShown(t, gate, f, signIP(t, f, f.tech, now, ""), f.tech, now, "", catalog.CodeGrantInvalid, "no console_ip")
	checkShown(t, gate, f, nil, f.tech, now, "", catalog.CodeGrantInvalid, "no grant")

	unseen := signIP(t, f, f.tech, now, "203.0.113.8")
	gate.Revoke(grant.Revocation{Technicians: []peer.ID{f.tech}, IssuedThrough: now.Unix()}, now)
	checkShown(t, gate, f, g, f.tech, now.Add(time.Second), "", catalog.CodeGrantRevoked, "an admitted grant, revoked")
	checkShown(t, gate, f, unseen, f.tech, now.Add(time.Second), "", catalog.CodeGrantRevoked, "an unseen grant, revoked")
}
