package coordinator_test

import (
	"slices"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestSearchNAT: `ls nat:KIND` finds the peers by what they last reported
// of their NAT in their statistics, a later report moves a peer from one
// answer to another, show carries the report, and an unknown kind is
// refused. (A report is the peer's own claim: a peer may lie about its
// NAT; search shows what it said, and nothing is authorised on it.)
func TestSearchNAT(t *testing.T) {
	h := newHarness(t)
	key := h.Installer(&pb.InstallerDefaults{}, 0, time.Hour).GetKey()
	stats := func(p *rawPeer, r *pb.NatReport) {
		t.Helper()
		if err := p.ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Stats{Stats: &pb.PeerStats{Nat: r}}}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	easy := newRawPeer(t, h.Site).online(h.Site, key, "easy-1")
	hard := newRawPeer(t, h.Site).online(h.Site, key, "hard-1")
	seq := newRawPeer(t, h.Site).online(h.Site, key, "seq-1")
	newRawPeer(t, h.Site).online(h.Site, key, "silent-1") // reports no NAT
	stats(easy, &pb.NatReport{Tcp: "endpoint-independent", Udp: "endpoint-independent", PortPreserving: true, Observers: 2,
		Hairpinning: pb.Hairpinning_HAIRPINNING_NO})
	stats(hard, &pb.NatReport{Tcp: "random", Udp: "blocked", Observers: 2, Hairpinning: pb.Hairpinning_HAIRPINNING_YES})
	stats(seq, &pb.NatReport{Tcp: "sequential", Udp: "unknown", Observers: 2})

	find := func(q string) []string {
		t.Helper()
		views, err := h.admin.Peers(h.ctx(), q, false)
		if err != nil {
			t.Fatalf("ls %s: %v", q, err)
		}
		var names []string
		for _, v := range views {
			names = append(names, v.GetPeer().GetInfo().GetHostname())
		}
		slices.Sort(names)
		return names
	}
	want := map[string][]string{
		"nat:hard":                 {"hard-1"},
		"nat:HARD":                 {"hard-1"},
		"nat:easy":                 {"easy-1"},
		"nat:endpoint-dependent":   {"hard-1", "seq-1"},
		"nat:sequential":           {"seq-1"},
		"nat:port-preserving":      {"easy-1"},
		"nat:udp-blocked":          {"hard-1"},
		"nat:unknown":              {"silent-1"},
		"-nat:easy -nat:unknown":   {"hard-1", "seq-1"},
		"nat:endpoint-independent": {"easy-1"},
		"nat:none":                 nil,
		"nat:hairpin":              {"hard-1"},
		"nat:no-hairpin":           {"easy-1"},
		"-nat:hairpin":             {"easy-1", "seq-1", "silent-1"},
	}
	for q, names := range want {
		coordinatortest.Eventually(t, 10*time.Second, "ls "+q, func() bool { return slices.Equal(find(q), names) })
	}

	// The easy peer's NAT turns out to need a fresh port per destination.
	stats(easy, &pb.NatReport{Tcp: "random", Udp: "unknown", Observers: 2})
	coordinatortest.Eventually(t, 10*time.Second, "the easy peer found hard", func() bool {
		return slices.Equal(find("nat:hard"), []string{"easy-1", "hard-1"}) && len(find("nat:easy")) == 0 && len(find("nat:no-hairpin")) == 0
	})
	v, err := h.admin.Peer(h.ctx(), hard.id().String())
	if err != nil {
		t.Fatal(err)
	}
	if r := v.GetPeer().GetStats().GetNat(); r.GetTcp() != "random" || r.GetUdp() != "blocked" || r.GetObservers() != 2 ||
		r.GetHairpinning() != pb.Hairpinning_HAIRPINNING_YES {
		t.Errorf("show carries %v", r)
	}

	// A lying peer: whatever it says, show carries only known kinds and an
	// IP:port, and its words do not reach search.
	liar := newRawPeer(t, h.Site).online(h.Site, key, "liar-1")
	// A hairpinning value no build knows is not tested.
	stats(liar, &pb.NatReport{Tcp: "\x1b]0;owned\x07easy\x00hard", Udp: "blocked\x1b[2J", PublicAddr: "\x1b[31m1.2.3.4:5", Observers: 1 << 30,
		Hairpinning: pb.Hairpinning(-7)})
	coordinatortest.Eventually(t, 10*time.Second, "the liar's report", func() bool {
		v, err := h.admin.Peer(h.ctx(), liar.id().String())
		r := v.GetPeer().GetStats().GetNat()
		return err == nil && r.GetTcp() == "unknown" && r.GetUdp() == "unknown" && r.GetPublicAddr() == "" && r.GetObservers() == 64 &&
			r.GetHairpinning() == pb.Hairpinning_HAIRPINNING_UNSPECIFIED
	})
	if got := find("nat:easy"); len(got) != 0 {
		t.Errorf("nat:easy finds %v", got)
	}

	for _, bad := range []string{"nat:cone", "nat:", "nat:hard\x01"} {
		_, err := h.admin.Peers(h.ctx(), bad, false)
		if catalog.CodeOf(err) != catalog.CodeInvalidArgument {
			t.Errorf("ls %q: %v, want %s", bad, err, catalog.CodeInvalidArgument)
		}
	}
}
