package peer

import (
	"net/netip"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/natmap"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// TestNATOf: what the puncher learnt becomes the statistics' report; a
// report that only moved in time is not news (no early statistics).
func TestNATOf(t *testing.T) {
	if natOf(punch.NATReport{TCP: natmap.Unknown, UDP: natmap.Unknown}) != nil {
		t.Error("a report of nothing observed is kept")
	}
	r := punch.NATReport{TCP: natmap.Random, UDP: punch.Blocked, Public: netip.MustParseAddrPort("203.0.113.7:9000"), Observers: 2, Updated: time.Unix(100, 0)}
	n := natOf(r)
	got := n.PB()
	if got.GetTcp() != "random" || got.GetUdp() != "blocked" || got.GetPublicAddr() != "203.0.113.7:9000" || got.GetObservers() != 2 || got.GetUpdatedUnix() != 100 {
		t.Errorf("report %v", got)
	}
	later := r
	later.Updated = time.Unix(200, 0)
	if !sameNAT(n, natOf(later)) {
		t.Error("a later report saying the same is news")
	}
	other := r
	other.TCP = natmap.Sequential
	if sameNAT(n, natOf(other)) || sameNAT(n, nil) || !sameNAT(nil, nil) {
		t.Error("sameNAT")
	}
	if (*NAT)(nil).PB() != nil {
		t.Error("nil report")
	}
}
