package punch

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

// UDP for the NAT report only. A peer usually reaches its relay over QUIC
// and its coordinator over TCP, so identify tells one UDP mapping: to tell
// the UDP kind, the Puncher makes one QUIC flow from the listening port to
// a trusted peer it has no QUIC connection to (dialled with the QUIC
// transport, asked identify's question, closed), in the background, at
// most maxLearn times. When the host listens on QUIC, no trusted observer
// ever saw a QUIC flow of it, and such a dial failed, UDP does not get out
// (the lab's udp-blocked preset): the report says Blocked. Nothing here
// changes what a punch offers.

// maybeLearnUDP starts, in the background, a fresh QUIC observation when
// the UDP flows seen do not tell the kind yet.
func (p *Puncher) maybeLearnUDP(from peer.ID) {
	if !p.trusted(from) || !p.listensOn("udp") {
		return
	}
	p.mu.Lock()
	if p.udpLearning || p.udpLearnt >= maxLearn || p.udpBlocked || natmap.Classify(p.udpFlows).Kind != natmap.Unknown || p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.udpLearning = true
	p.udpLearnt++
	p.mu.Unlock()
	p.wg.Go(func() {
		err := p.observeFreshUDP(p.ctx)
		p.mu.Lock()
		p.udpLearning = false
		if errors.Is(err, errNoObserver) {
			p.udpLearnt-- // not a try: wait for another trusted peer
		}
		p.mu.Unlock()
		p.log.Debug("NAT report: a fresh QUIC observation", "error", err)
		p.natChanged()
	})
}

// observeFreshUDP makes one new QUIC flow from the listening port to a
// trusted observer and notes the mapping it reports; when every dial
// failed and no QUIC flow was ever seen, it notes UDP blocked.
func (p *Puncher) observeFreshUDP(ctx context.Context) error {
	dn, ok := p.h.Network().(dialingNetwork)
	if !ok {
		return errors.New("the host's network cannot dial a transport")
	}
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	var errs []error
	for _, o := range p.observersFor("udp") {
		tr := dn.TransportForDialing(o.Addrs[0])
		if tr == nil {
			continue
		}
		obs, opened, err := askObserved(ctx, tr, o)
		if err == nil && !p.listeningOn("udp", opened.local) {
			err = fmt.Errorf("the flow left from %v, not the listening port", opened.local)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.ID, err))
			continue
		}
		if q, _ := transportPort(obs); q != "udp" || !manet.IsPublicAddr(obs) {
			continue
		}
		p.mu.Lock()
		p.udpFlows = noteFlowAt(p.udpFlows, opened.remote, obs, opened.at)
		p.seen(o.ID)
		p.mu.Unlock()
		return nil
	}
	if len(errs) == 0 {
		return errNoObserver
	}
	p.mu.Lock()
	if len(p.udpFlows) == 0 && ctx.Err() != context.Canceled {
		p.udpBlocked = true
	}
	p.mu.Unlock()
	return fmt.Errorf("no fresh QUIC observation: %w", errors.Join(errs...))
}

// observersFor are the trusted peers this host is connected to with a
// public address of transport proto ("tcp" or "udp": QUIC), and no direct
// connection of that transport to them.
func (p *Puncher) observersFor(proto string) []peer.AddrInfo {
	return observersFor(p.h, p.trusted, proto)
}

func observersFor(h host.Host, trusted func(peer.ID) bool, proto string) []peer.AddrInfo {
	var out []peer.AddrInfo
	for _, id := range h.Network().Peers() {
		if !trusted(id) || slices.ContainsFunc(h.Network().ConnsToPeer(id), func(c network.Conn) bool {
			q, _ := transportPort(c.RemoteMultiaddr())
			return q == proto && !mesh.IsCircuit(c.RemoteMultiaddr())
		}) {
			continue
		}
		for _, a := range h.Peerstore().Addrs(id) {
			if q, _ := transportPort(a); q == proto && manet.IsPublicAddr(a) && !isWebsocket(a) && !mesh.IsCircuit(a) && (proto == "tcp" || isQUIC(a)) {
				out = append(out, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{a}})
				break
			}
		}
	}
	return out
}

// ObserveQUIC makes one QUIC flow from h's listening port to each trusted
// peer h is connected to without QUIC (at most two), asks identify where
// it saw the flow, and returns those observations: what a console that
// does not run a Puncher tells of its NAT in a probe exchange (UDPSide).
func ObserveQUIC(ctx context.Context, h host.Host, trusted func(peer.ID) bool) ([]natmap.Observation, error) {
	dn, ok := h.Network().(dialingNetwork)
	if !ok {
		return nil, errors.New("the host's network cannot dial a transport")
	}
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	var flows []natmap.Observation
	var errs []error
	for _, o := range observersFor(h, trusted, "udp") {
		if len(flows) == 2 {
			break
		}
		tr := dn.TransportForDialing(o.Addrs[0])
		if tr == nil {
			continue
		}
		obs, opened, err := askObserved(ctx, tr, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.ID, err))
			continue
		}
		if q, _ := transportPort(obs); q == "udp" && manet.IsPublicAddr(obs) {
			flows = noteFlowAt(flows, opened.remote, obs, opened.at)
		}
	}
	if len(flows) == 0 {
		if len(errs) == 0 {
			return nil, errNoObserver
		}
		return nil, fmt.Errorf("no QUIC observation: %w", errors.Join(errs...))
	}
	return flows, nil
}

func isQUIC(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_QUIC_V1)
	return err == nil
}

// listensOn reports whether the host listens on transport proto.
func (p *Puncher) listensOn(proto string) bool {
	return slices.ContainsFunc(p.h.Network().ListenAddresses(), func(l ma.Multiaddr) bool {
		q, _ := transportPort(l)
		return q == proto && (proto == "tcp" || isQUIC(l))
	})
}

// listeningOn reports whether a is from one of the host's listening ports of transport proto.
func (p *Puncher) listeningOn(proto string, a ma.Multiaddr) bool {
	_, port := transportPort(a)
	return slices.ContainsFunc(p.h.Network().ListenAddresses(), func(l ma.Multiaddr) bool {
		q, lp := transportPort(l)
		return q == proto && lp == port
	})
}
