package peer

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// hairpinDaemon is the part of a daemon the hairpin test uses: a real
// host on 127.0.0.1 with a QUIC socket.
func hairpinDaemon(t *testing.T) *Daemon {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{host: h, natNews: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler)}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { d.cancel(); d.wg.Wait(); h.Close() })
	return d
}

// silentMapping is a UDP port on 127.0.0.2 (not one of the host's
// addresses) that reads nothing: a NAT that does not hairpin.
func silentMapping(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestMaybeHairpin: a report with a UDP mapping starts one test per
// mapping, in the background, whose result is NAT news and goes in the
// report; the host's own address (no NAT) and a NoNAT report are not
// tested; at most maxHairpinTests run.
func TestMaybeHairpin(t *testing.T) {
	d := hairpinDaemon(t)
	report := func(mapped netip.AddrPort) punch.NATReport {
		return punch.NATReport{TCP: natmap.EndpointIndependent, UDP: natmap.EndpointIndependent, UDPPublic: mapped, Observers: 2, Updated: time.Now()}
	}
	runs := func() int { d.hairpin.mu.Lock(); defer d.hairpin.mu.Unlock(); return d.hairpin.runs }

	own := netip.MustParseAddrPort("127.0.0.1:4001")
	d.maybeHairpin(report(own))
	noNAT := report(silentMapping(t))
	noNAT.NoNAT = true
	d.maybeHairpin(noNAT)
	d.maybeHairpin(report(netip.AddrPort{}))
	if n := runs(); n != 0 {
		t.Fatalf("%d tests without a NAT to test", n)
	}

	mapped := silentMapping(t)
	d.maybeHairpin(report(mapped))
	d.maybeHairpin(report(mapped)) // running: not twice
	select {
	case <-d.natNews:
	case <-time.After(punch.HairpinTimeout + 5*time.Second):
		t.Fatal("no NAT news from the hairpin test")
	}
	d.wg.Wait()
	n := natOf(report(mapped))
	n.Hairpinning = d.hairpin.hairpinning()
	if n.Hairpinning != hairpinNo || n.PB().GetHairpinning() != pb.Hairpinning_HAIRPINNING_NO {
		t.Fatalf("hairpinning %q (%v), want no", n.Hairpinning, n.PB().GetHairpinning())
	}
	d.maybeHairpin(report(mapped)) // tested: not again
	d.wg.Wait()
	if n := runs(); n != 1 {
		t.Fatalf("%d tests of one mapping", n)
	}
	for range maxHairpinTests + 2 {
		d.maybeHairpin(report(silentMapping(t)))
		d.wg.Wait()
	}
	if n := runs(); n != maxHairpinTests {
		t.Fatalf("%d tests, want at most %d", n, maxHairpinTests)
	}
}

// TestHairpinPB: the report's word on the wire and back.
func TestHairpinPB(t *testing.T) {
	for s, want := range map[string]pb.Hairpinning{hairpinYes: pb.Hairpinning_HAIRPINNING_YES, hairpinNo: pb.Hairpinning_HAIRPINNING_NO, "": pb.Hairpinning_HAIRPINNING_UNSPECIFIED} {
		if got := (&NAT{TCP: "random", Hairpinning: s}).PB().GetHairpinning(); got != want {
			t.Errorf("%q → %v, want %v", s, got, want)
		}
	}
	a, b := &NAT{TCP: "random"}, &NAT{TCP: "random", Hairpinning: hairpinNo}
	if sameNAT(a, b) {
		t.Error("a hairpin result is no news")
	}
}
