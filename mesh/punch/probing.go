package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/probe"
)

// Port-mapping probing (mesh/probe) for the pairs a punch cannot open: one
// side behind a NAT that maps every destination to a new random port, the
// other behind one that keeps a single mapping. The site's switch is the
// coordinator's nat-probing setting (told to peers in their welcome). The
// console shows a jump grant for this peer in its answer; the puncher
// checks it (WithGrantCheck) and probes only towards the console IP the
// coordinator signed in it — or, for a console that opened a session
// already, the one in the grant it showed then (WithGranted).
//
// When: a host whose own UDP mapping is random probes at once (a punch
// cannot open its NAT); one whose mapping is endpoint-independent probes
// after a punch failed (the console's NAT may be the random one); any
// other never. At most maxExchanges per relayed connection, one exchange
// at a time per host.

// maxExchanges bounds the probe exchanges for one remote while its
// relayed connection lasts: with probe's packet budget, at most
// 2 × (MaxSockets + MaxProbes) = 2,560 datagrams.
const maxExchanges = 2

// WithProbing makes the puncher ask, before each probe, whether the site
// lets it probe. Without it, it may. on must be quick (an atomic load).
func WithProbing(on func() bool) Option { return func(p *Puncher) { p.probing = on } }

// WithGranted tells the puncher, for a remote, the public IP the
// coordinator saw it at in a grant the remote showed this host and that
// is still open (grant.Gate.ConsoleIP); ok false when the remote showed
// none.
func WithGranted(f func(remote peer.ID) (ip netip.Addr, ok bool)) Option {
	return func(p *Puncher) { p.granted = f }
}

// WithGrantCheck makes the puncher check the grant a console shows in its
// probe answer: f verifies that the site granted remote a jump to this
// host (signature, names, expiry, revocations) and returns the console IP
// the coordinator signed in it. Without it or WithGranted the puncher
// never probes.
func WithGrantCheck(f func(remote peer.ID, g *pb.JumpGrant) (netip.Addr, error)) Option {
	return func(p *Puncher) { p.grantCheck = f }
}

// mayProbe reports whether the site lets the puncher probe.
func (p *Puncher) mayProbe() bool {
	return (p.granted != nil || p.grantCheck != nil) && (p.probing == nil || p.probing())
}

// shouldProbe reports whether the n-th attempt for remote is a probe.
func (p *Puncher) shouldProbe(remote peer.ID, n int) bool {
	if !p.mayProbe() || !p.listensOn("udp") {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probes[remote] >= maxExchanges {
		return false
	}
	switch natmap.Classify(p.udpFlows).Kind {
	case natmap.Random:
		return true
	case natmap.EndpointIndependent:
		return n >= 2
	}
	return false
}

// errEndpointDependent: the remote's NAT maps each destination to its own
// port, so a punch cannot pass; a probe may.
var errEndpointDependent = errors.New("the remote's NAT gave its observers different ports: no punch can pass")

// probeFits reports whether an endpoint-independent host may probe with
// remote next (its next attempt): a punch's exchange showed the remote's
// NAT endpoint-dependent, so the punch's dial is skipped.
func (p *Puncher) probeFits(remote peer.ID) bool {
	if !p.mayProbe() || !p.listensOn("udp") {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes[remote] < maxExchanges && natmap.Classify(p.udpFlows).Kind == natmap.EndpointIndependent
}

// endpointDependent reports whether addrs (a remote's addresses in a
// punch's exchange) give one public IP two TCP ports: its observers saw
// its NAT map their flows to different ports.
func endpointDependent(addrs []ma.Multiaddr) bool {
	ports := map[netip.Addr]uint16{}
	for _, a := range addrs {
		if q, _ := transportPort(a); q != "tcp" || !manet.IsPublicAddr(a) {
			continue
		}
		ap, err := addrPort(a)
		if err != nil {
			continue
		}
		if port, ok := ports[ap.Addr()]; ok && port != ap.Port() {
			return true
		}
		ports[ap.Addr()] = ap.Port()
	}
	return false
}

// UDPSide is what a host tells of its NAT in a probe exchange, from the
// QUIC flows its trusted observers saw from its listening port.
func UDPSide(flows []natmap.Observation, blocked bool) *pb.ProbeSide {
	side := &pb.ProbeSide{Kind: string(natmap.Classify(flows).Kind)}
	if len(flows) == 0 {
		if blocked {
			side.Kind = string(Blocked)
		}
		return side
	}
	last := flows[len(flows)-1].Mapped
	side.UdpMapping, side.PublicIp = last.String(), last.Addr().String()
	return side
}

// probe runs one probe exchange with remote over its relayed connection.
func (p *Puncher) probe(remote peer.ID) (probe.Result, error) {
	p.probeMu.Lock()
	defer p.probeMu.Unlock()
	p.mu.Lock()
	if p.probes == nil {
		p.probes = map[peer.ID]int{}
	}
	p.probes[remote]++
	side := UDPSide(p.udpFlows, p.udpBlocked)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.ctx, probe.Timeout+2*time.Second)
	defer cancel()
	s, err := p.h.NewStream(network.WithAllowLimitedConn(network.WithNoDial(ctx, "probe"), "probe"), remote, probe.Protocol)
	if err != nil {
		return probe.Result{}, fmt.Errorf("opening the probe stream: %w", err)
	}
	defer s.Close()
	l := probe.Local{
		Host: p.h, Side: side, Log: p.log,
		UDP:        func(nw string) (net.PacketConn, error) { return mesh.SharedUDP(p.h, nw) },
		CheckGrant: p.consoleIP,
	}
	return probe.Initiate(ctx, s, l)
}

// consoleIP is the public IP the coordinator saw remote at: from the grant
// it shows, else from one it showed on a session.
func (p *Puncher) consoleIP(remote peer.ID, g *pb.JumpGrant) (netip.Addr, error) {
	var errs []error
	if g != nil && p.grantCheck != nil {
		ip, err := p.grantCheck(remote, g)
		if err == nil && ip.IsValid() {
			return ip.Unmap(), nil
		}
		errs = append(errs, err)
	}
	if p.granted != nil {
		if ip, ok := p.granted(remote); ok && ip.IsValid() {
			return ip.Unmap(), nil
		}
	}
	errs = append(errs, errors.New("the console showed no grant for this peer with its IP"))
	return netip.Addr{}, errors.Join(errs...)
}
