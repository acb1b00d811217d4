package punch

import (
	"net/netip"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

// Blocked is the UDP kind of a host whose UDP does not get out: it listens
// on QUIC, no trusted observer ever saw a QUIC connection of it, and a QUIC
// dial to a trusted observer it reaches over TCP failed.
const Blocked natmap.Kind = "blocked"

// NATReport is what the Puncher learnt of the host's NAT from its trusted
// observers (the coordinator, the relays): the host's own account, for
// `jumpmesh show` and the lab's reports. It decides nothing.
type NATReport struct {
	// TCP is the mapping of the TCP listening port's flows; UDP that of
	// the QUIC ones (Blocked when UDP does not get out).
	TCP, UDP natmap.Kind
	// PortPreserving: every TCP flow observed was mapped to the listening
	// port itself.
	PortPreserving bool
	// NoNAT: the observers saw a TCP flow from the host's own address.
	NoNAT bool
	// Public is the latest TCP mapping observed (zero when none).
	Public netip.AddrPort
	// UDPPublic is the latest mapping of the QUIC listening port a
	// trusted observer saw (zero when none): what a hairpin test
	// (Hairpin) sends to.
	UDPPublic netip.AddrPort
	// Observers is how many trusted peers saw a flow of the host.
	Observers int
	// Updated is when the last observation came (zero when none).
	Updated time.Time
}

// Known reports whether r says anything.
func (r NATReport) Known() bool { return !r.Updated.IsZero() }

// NAT returns what the observations so far show of the host's NAT.
func (p *Puncher) NAT() NATReport {
	listen := p.h.Network().ListenAddresses()
	ifaces, _ := p.h.Network().InterfaceListenAddresses()
	p.mu.Lock()
	defer p.mu.Unlock()
	return natReport(p.flows, p.udpFlows, listen, ifaces, len(p.seenBy), p.udpBlocked, p.updated)
}

// natReport builds a report from observed flows (TCP and UDP, from the
// listening ports) and the host's listen and interface addresses.
func natReport(tcp, udp []natmap.Observation, listen, ifaces []ma.Multiaddr, observers int, udpBlocked bool, updated time.Time) NATReport {
	r := NATReport{TCP: natmap.Classify(tcp).Kind, UDP: natmap.Classify(udp).Kind, Observers: observers, Updated: updated}
	if len(udp) == 0 && udpBlocked {
		r.UDP = Blocked
	}
	if len(udp) > 0 {
		r.UDPPublic = udp[len(udp)-1].Mapped
	}
	if len(tcp) == 0 {
		return r
	}
	r.Public = tcp[len(tcp)-1].Mapped
	ports := map[uint16]bool{}
	for _, l := range listen {
		if q, _ := transportPort(l); q == "tcp" {
			if ap, err := addrPort(l); err == nil {
				ports[ap.Port()] = true
			}
		}
	}
	r.PortPreserving = !slices.ContainsFunc(tcp, func(o natmap.Observation) bool { return !ports[o.Mapped.Port()] })
	r.NoNAT = slices.ContainsFunc(ifaces, func(a ma.Multiaddr) bool {
		ap, err := addrPort(a)
		return err == nil && ap.Addr() == r.Public.Addr()
	})
	return r
}

// seen notes that trusted peer id observed a flow of the host. p.mu is held.
func (p *Puncher) seen(id peer.ID) {
	if p.seenBy == nil {
		p.seenBy = map[peer.ID]bool{}
	}
	p.seenBy[id] = true
	p.updated = time.Now()
}
