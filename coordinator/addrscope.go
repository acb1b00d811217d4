package coordinator

import (
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// Which of a peer's addresses a console may be handed. The coordinator is
// where this is decided, not the peer: only it sees both ends (the
// console's connection and the peer's), and a compromised or old peer may
// report anything. A loopback address names the host that dials it, so
// handed to a console on another host it makes the console dial itself
// (measured: `/ip6/::1/tcp/PORT` came first in a console's dial order and
// put its LAN dial 30 ms behind the relay's); a link-local address means
// nothing without the interface it belongs to. So, as libp2p's identify
// keeps an address only in the scope the connection it arrived on shows:
//   - link-local and unspecified addresses are never handed out;
//   - loopback ones only when the peer and the console both reach the
//     coordinator over loopback: all three on one host (a developer's
//     machine, the tests), where loopback is the right address.

// addrScope tells which of a peer's addresses suit a console.
type addrScope struct {
	// loopback: the console and the peer share the coordinator's host.
	loopback bool
}

// scopeFor is the scope of addresses the console may be handed for id.
func (s *Service) scopeFor(console, id peer.ID) addrScope {
	return addrScope{loopback: s.onLoopback(console) && s.onLoopback(id)}
}

// onLoopback reports whether p is connected to the coordinator from a
// loopback address (false when the coordinator cannot tell).
func (s *Service) onLoopback(p peer.ID) bool {
	if s.connAddrs == nil || p == "" {
		return false
	}
	for _, a := range s.connAddrs(p) {
		if manet.IsIPLoopback(a) {
			return true
		}
	}
	return false
}

// keep reports whether a may be handed out in this scope.
func (sc addrScope) keep(a ma.Multiaddr) bool {
	ip, err := manet.ToIP(a)
	if err != nil {
		// Not an IP address (a DNS name, a circuit through a relay): the
		// scope rules do not apply.
		return true
	}
	switch {
	case ip.IsUnspecified(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsMulticast():
		return false
	case ip.IsLoopback():
		return sc.loopback
	}
	return true
}

// filter keeps the addresses a may be handed out in this scope.
func (sc addrScope) filter(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := addrs[:0:0]
	for _, a := range addrs {
		if sc.keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// connRemoteAddrs are the remote addresses of h's connections to p.
func connRemoteAddrs(h host.Host, p peer.ID) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, c := range h.Network().ConnsToPeer(p) {
		out = append(out, c.RemoteMultiaddr())
	}
	return out
}

// peerIP is the IP the coordinator sees peer id's direct connection come
// from (its NAT's public IP), "" when it has none: what a console may
// send port-mapping probes to (PeerView.peer_ip).
func (s *Service) peerIP(id peer.ID) string {
	if s.connAddrs == nil {
		return ""
	}
	for _, a := range s.connAddrs(id) {
		if mesh.IsCircuit(a) {
			continue
		}
		if ip, err := manet.ToIP(a); err == nil {
			return ip.String()
		}
	}
	return ""
}
