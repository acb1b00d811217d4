package mesh

import (
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// LANRTTBudget is the round trip a LAN is allowed: libp2p's own delay
// between private addresses (swarm.PrivateTCPDelay), which covers a busy
// Wi-Fi. LANGrace, two of them, is how long a console lets a peer's
// addresses on its own subnet answer before it dials anything else (the
// relay's circuit, the peer's public addresses). In the lab (same-lan
// scenario, 4 ms LAN round trip, 2 cores shared) a LAN connection took
// 44-58 ms, one round trip of TCP, one of security negotiation and one of
// TLS, mostly CPU; a circuit through a relay as near needs the relay's
// TCP and TLS, the relay's hop to the peer, and the peer's TLS on top.
// An address on our subnet that is not the peer (another network with
// the same numbers) costs at most LANGrace before the relay.
const (
	LANRTTBudget = swarm.PrivateTCPDelay
	LANGrace     = 2 * LANRTTBudget
)

// LANDialRanker is the dial ranker of hosts that reach peers (consoles).
// libp2p's default ranker dials a relayed address at once whenever the
// peer has no public address, so a near relay could win the race against
// the peer's LAN address; its happy eyeballs put IPv6 first, so a peer's
// `::1` went ahead of its LAN IPv4 address by 30 ms. Here the peer's
// addresses on a subnet of one of our interfaces are dialled first (in
// libp2p's order among themselves: QUIC before TCP, IPv6 before IPv4, 30
// ms apart on a LAN), and everything else (circuits, public addresses,
// other networks' private addresses, loopback ones) LANGrace later, in
// libp2p's order too. Without an address on our subnets the ranking is
// libp2p's default, unchanged: a host whose peers are all on loopback
// (tests, a developer's machine) dials as before.
//
// interfaceAddrs lists our interface addresses (net.InterfaceAddrs when
// nil); it is read at every ranking, so a laptop that changed networks
// ranks by where it is now.
func LANDialRanker(interfaceAddrs func() ([]net.Addr, error)) network.DialRanker {
	if interfaceAddrs == nil {
		interfaceAddrs = net.InterfaceAddrs
	}
	return func(addrs []ma.Multiaddr) []network.AddrDelay {
		subnets := ourSubnets(interfaceAddrs)
		var local, rest []ma.Multiaddr
		for _, a := range addrs {
			if onSubnet(a, subnets) {
				local = append(local, a)
			} else {
				rest = append(rest, a)
			}
		}
		out := swarm.DefaultDialRanker(local)
		var grace time.Duration
		if len(local) > 0 {
			grace = LANGrace
		}
		for _, d := range swarm.DefaultDialRanker(rest) {
			out = append(out, network.AddrDelay{Addr: d.Addr, Delay: d.Delay + grace})
		}
		return out
	}
}

// ourSubnets are the networks of our interface addresses (none on error).
func ourSubnets(interfaceAddrs func() ([]net.Addr, error)) []*net.IPNet {
	addrs, err := interfaceAddrs()
	if err != nil {
		return nil
	}
	var out []*net.IPNet
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
			out = append(out, &net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask})
		}
	}
	return out
}

// onSubnet reports whether a is a direct IP address inside one of
// subnets. A relayed address never is (its IP is the relay's), nor a
// loopback one (it names the dialler: only right when the peer shares our
// host, and then nothing races it), nor a link-local one.
func onSubnet(a ma.Multiaddr, subnets []*net.IPNet) bool {
	if IsCircuit(a) {
		return false
	}
	ip, err := manet.ToIP(a)
	if err != nil || ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, n := range subnets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
