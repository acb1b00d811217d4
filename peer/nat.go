package peer

import (
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// NAT is what the peer learnt of its NAT from its trusted observers (the
// puncher's punch.NATReport), as `jumpmesh peer status` and the statistics
// report it. It is the peer's own account: the coordinator shows it and
// decides nothing on it.
type NAT struct {
	// TCP and UDP are natmap kinds (endpoint-independent, sequential,
	// random, unknown), UDP also "blocked".
	TCP            string `json:"tcp"`
	UDP            string `json:"udp"`
	PortPreserving bool   `json:"port_preserving,omitempty"`
	NoNAT          bool   `json:"no_nat,omitempty"`
	PublicAddr     string `json:"public_addr,omitempty"`
	Observers      int    `json:"observers"`
	// Hairpinning is the hairpin test's result: "yes", "no", or "" when
	// not tested (hairpin.go).
	Hairpinning string    `json:"hairpinning,omitempty"`
	Updated     time.Time `json:"updated,omitzero"`
}

// natOf is the report r as the peer keeps it; nil when r says nothing.
func natOf(r punch.NATReport) *NAT {
	if !r.Known() {
		return nil
	}
	n := &NAT{TCP: string(r.TCP), UDP: string(r.UDP), PortPreserving: r.PortPreserving, NoNAT: r.NoNAT, Observers: r.Observers, Updated: r.Updated.UTC()}
	if r.Public.IsValid() {
		n.PublicAddr = r.Public.String()
	}
	return n
}

// PB is the report for the statistics; nil for nil.
func (n *NAT) PB() *pb.NatReport {
	if n == nil {
		return nil
	}
	return &pb.NatReport{Tcp: n.TCP, Udp: n.UDP, PortPreserving: n.PortPreserving, NoNat: n.NoNAT, PublicAddr: n.PublicAddr,
		Observers: uint32(n.Observers), UpdatedUnix: n.Updated.Unix(), Hairpinning: hairpinPB(n.Hairpinning)}
}

// sameNAT reports whether a and b say the same (when they were updated aside).
func sameNAT(a, b *NAT) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Updated, y.Updated = time.Time{}, time.Time{}
	return x == y
}

// natReport is the puncher's latest report with the hairpin test's result
// (nil without a puncher or before any observation). A report with a UDP
// mapping not tested yet starts a hairpin test.
func (d *Daemon) natReport() *NAT {
	d.mu.Lock()
	p := d.puncher
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	r := p.NAT()
	d.maybeHairpin(r)
	n := natOf(r)
	if n != nil {
		n.Hairpinning = d.hairpin.hairpinning()
	}
	return n
}

// natChanged tells the session loop that the puncher saw something new
// (punch.WithNATChange); it never blocks.
func (d *Daemon) natChanged() {
	select {
	case d.natNews <- struct{}{}:
	default:
	}
}
