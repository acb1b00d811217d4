package peer

import (
	"context"
	"net/netip"
	"sync"
	"time"

	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// maxHairpinTests bounds the hairpin tests one daemon runs: one per UDP
// mapping its trusted observers report, and an endpoint-dependent NAT
// shows each observer another one.
const maxHairpinTests = 4

// Hairpinning as the peer's NAT report says it (NAT.Hairpinning).
const (
	hairpinYes = "yes"
	hairpinNo  = "no"
)

// hairpin is the peer's hairpin test (punch.Hairpin): once the puncher's
// NAT report has a UDP mapping, the peer tests it in the background, at
// most once per mapping and maxHairpinTests in all, and the report carries
// the latest result. A host without a NAT (its mapping is one of its own
// addresses) is not tested: hairpinning is a NAT's, and the datagram would
// arrive whatever.
type hairpin struct {
	mu      sync.Mutex
	tested  map[netip.AddrPort]bool // mappings tested or being tested
	running bool
	runs    int
	result  string // hairpinYes, hairpinNo, or "" (not known)
}

// hairpinning is the latest result ("" before any).
func (hp *hairpin) hairpinning() string {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.result
}

// maybeHairpin starts a hairpin test of r's UDP mapping when it has not
// been tested; the result comes as NAT news.
func (d *Daemon) maybeHairpin(r punch.NATReport) {
	mapped := r.UDPPublic
	if !mapped.IsValid() || r.NoNAT || d.ownAddr(mapped.Addr()) || d.ctx.Err() != nil {
		return
	}
	hp := &d.hairpin
	hp.mu.Lock()
	if hp.running || hp.tested[mapped] || hp.runs >= maxHairpinTests {
		hp.mu.Unlock()
		return
	}
	if hp.tested == nil {
		hp.tested = map[netip.AddrPort]bool{}
	}
	hp.tested[mapped], hp.running = true, true
	hp.runs++
	hp.mu.Unlock()
	d.wg.Go(func() {
		ctx, cancel := context.WithTimeout(d.ctx, punch.HairpinTimeout+time.Second)
		defer cancel()
		start := time.Now()
		ok, err := punch.Hairpin(ctx, d.host, mapped)
		hp.mu.Lock()
		hp.running = false
		switch {
		case err != nil:
			delete(hp.tested, mapped) // not known: a later report may try again
		case ok:
			hp.result = hairpinYes
		default:
			hp.result = hairpinNo
		}
		hp.mu.Unlock()
		if err != nil {
			d.log.Debug("NAT hairpin test failed", "mapped", mapped, "error", err)
			return
		}
		d.log.Info("NAT hairpin test", "mapped", mapped, "hairpinning", ok, "took", time.Since(start).Round(time.Millisecond))
		d.natChanged()
	})
}

// ownAddr reports whether ip is one of the host's interface addresses.
func (d *Daemon) ownAddr(ip netip.Addr) bool {
	ifaces, err := d.host.Network().InterfaceListenAddresses()
	if err != nil {
		return false
	}
	for _, a := range ifaces {
		if own, err := manet.ToIP(a); err == nil {
			if o, ok := netip.AddrFromSlice(own); ok && o.Unmap() == ip.Unmap() {
				return true
			}
		}
	}
	return false
}

// hairpinPB is a report's hairpinning on the wire.
func hairpinPB(s string) pb.Hairpinning {
	switch s {
	case hairpinYes:
		return pb.Hairpinning_HAIRPINNING_YES
	case hairpinNo:
		return pb.Hairpinning_HAIRPINNING_NO
	}
	return pb.Hairpinning_HAIRPINNING_UNSPECIFIED
}
