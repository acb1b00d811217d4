package coordinator

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// The members' lane. During a reconnect storm the handshake gate
// (handshakes.go) keeps the peers it cannot serve yet in the kernel's
// accept queue of the coordinator's TCP port. A technician's console
// reaches the coordinator over TCP too (mesh.CoordinatorOverTCP: its TCP
// mapping, which the coordinator's identify tells it, is what a hole punch
// offers), so after a coordinator restart its first connection waited in
// that queue behind the storm: 2.8 s for the first `ls` of a 2,000-peer
// storm on a quiet machine (docs/performance.md, "Coordinator under
// storms").
//
// A queue in the kernel is first come, first served, and nothing of a
// connection is known before it is accepted but its address; so the lane
// is a TCP port of its own, with its own accept loop: the coordinator
// listens at each TCP listen address's port + laneOffset (4837 by default;
// a port 0 stays 0), and it is announced to users' keys only, on every control
// answer (pb.Response.member_lane), never in the addresses identify or the
// DHT tell. A member (mesh/member) dials the lane first and its other
// addresses if the lane does not answer. Through the lane's accept loop a
// connection takes one of gateLanePlaces places of the gate's own, beside
// the storm's bound: it waits for neither the queue nor the bound.
//
// Tried on paper, not built: passing the addresses that authenticated as
// members recently — the gate sees an address only once the kernel's queue
// hands the connection over, after the storm's; consoles dialling QUIC for
// their requests and TCP only for the address the coordinator observes —
// QUIC's handshakes run in quic-go's packet loop, past any bound, and the
// console's TCP connection would still come only after the storm, with
// the mapping hole punching offers.
//
// A stranger may find the port. What it gets there: at most gateLanePlaces
// handshakes at once beside the storm's bound (each holding its place as
// long as one through the gate does, so silent connections cannot hold
// the lane longer either), and after its handshake, the connection is
// closed unless its key is a user's (InterceptSecured): not even a login.
// Peers do not wait for the lane's places, so strangers filling it slow a
// member, never the peers (TestStrangersOnTheMemberLane).
type memberLane struct {
	// listen are the lane's listen addresses (resolved ports once
	// listening).
	listen []ma.Multiaddr
	// isUser tells whether a key is a user's (technician, administrator,
	// relay, jumpoint); set once the service exists.
	isUser func(peer.ID) bool

	mu sync.Mutex
	// ports are the lane's listening ports, "ip4/4837", "ip6/4837";
	// pairs the lane's port for each TCP listen port ("ip4/4830": "4837").
	ports map[string]bool
	pairs map[string]string
	// up is set once the lane listens.
	up bool
	// accepted counts connections the lane's accept loop let through that
	// OpenConnection has not taken yet, by remote address.
	accepted map[string]int
	// refused counts strangers' connections closed after their handshake.
	refused int64
}

// laneOffset is the lane's port past a TCP listen port: 4830's lane is
// 4837, the first port after those of the coordinator's HTTP (4831), the
// relay's (4832, its HTTP 4833, its splice 4836) and the jumpoint's (4833,
// 4834, its link 4835).
const laneOffset = 7

// laneListenAddrs are the lane's addresses for the coordinator's listen
// addresses: each TCP one's port + laneOffset (port 0 stays 0).
func laneListenAddrs(listen []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range listen {
		port, err := a.ValueForProtocol(ma.P_TCP)
		if err != nil {
			continue
		}
		n, err := strconv.Atoi(port)
		if err != nil || n+laneOffset > 65535 {
			continue
		}
		if n > 0 {
			n += laneOffset
		}
		rest, err := ma.NewMultiaddr(fmt.Sprintf("/tcp/%d", n))
		if err != nil {
			continue
		}
		ip, _ := ma.SplitFirst(a)
		if ip == nil {
			continue
		}
		out = append(out, ma.Join(ma.Multiaddr{*ip}, rest))
	}
	return out
}

func newMemberLane(listen []ma.Multiaddr) *memberLane {
	l := &memberLane{listen: laneListenAddrs(listen), ports: map[string]bool{}, pairs: map[string]string{}, accepted: map[string]int{}}
	for _, a := range l.listen {
		if k := portKey(a); k != "" && !hasPortZero(a) {
			l.ports[k] = true
		}
	}
	return l
}

// portKey is "ip4/PORT" or "ip6/PORT" for a TCP address, "" for others.
func portKey(a ma.Multiaddr) string {
	if a == nil {
		return ""
	}
	port, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return ""
	}
	if _, err := a.ValueForProtocol(ma.P_IP6); err == nil {
		return "ip6/" + port
	}
	if _, err := a.ValueForProtocol(ma.P_IP4); err == nil {
		return "ip4/" + port
	}
	return ""
}

// listening records where the lane listens (ports the kernel chose) and
// which of the host's TCP listen addresses (main, resolved) each pairs
// with: the one at the same IP.
func (l *memberLane) listening(lane, main []ma.Multiaddr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listen, l.up = lane, true
	for _, a := range lane {
		k := portKey(a)
		if k == "" {
			continue
		}
		l.ports[k] = true
		ip, _ := ma.SplitFirst(a)
		for _, m := range main {
			if mk := portKey(m); mk != "" && !l.ports[mk] {
				if mip, _ := ma.SplitFirst(m); mip != nil && ip != nil && mip.Equal(ip) {
					port, _ := a.ValueForProtocol(ma.P_TCP)
					l.pairs[mk] = port
				}
			}
		}
	}
}

// onLane tells whether a local address is one of the lane's.
func (l *memberLane) onLane(local ma.Multiaddr) bool {
	k := portKey(local)
	if k == "" {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ports[k]
}

// take reports whether the connection from remote that OpenConnection is
// about to open came through the lane's accept loop. The gater's
// InterceptAccept counted it, just before, on the same goroutine.
func (l *memberLane) take(remote ma.Multiaddr) bool {
	if l == nil || remote == nil {
		return false
	}
	k := string(remote.Bytes())
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.accepted[k]
	switch {
	case n == 0:
		return false
	case n == 1:
		delete(l.accepted, k)
	default:
		l.accepted[k] = n - 1
	}
	return true
}

// announce are the lane's addresses for members: each of the
// coordinator's advertised TCP addresses (IP or DNS name) whose port is a
// TCP listen port, with the lane's port paired with it (a public address
// forwarded to another port has none).
func (l *memberLane) announce(advertised []ma.Multiaddr) []ma.Multiaddr {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ma.Multiaddr
	for _, a := range advertised {
		port, ok := l.pairs[portKey(a)]
		if p, err := a.ValueForProtocol(ma.P_TCP); !ok && err == nil {
			// A DNS name: the lane of either family's listen port.
			if port, ok = l.pairs["ip4/"+p]; !ok {
				port, ok = l.pairs["ip6/"+p]
			}
		}
		if !ok {
			continue
		}
		ip, _ := ma.SplitFirst(a)
		rest, err := ma.NewMultiaddr("/tcp/" + port)
		if ip == nil || err != nil {
			continue
		}
		out = append(out, ma.Join(ma.Multiaddr{*ip}, rest))
	}
	return out
}

// withoutLane drops the lane's addresses from what the host advertises.
func (l *memberLane) withoutLane(addrs []ma.Multiaddr) []ma.Multiaddr {
	return slices.DeleteFunc(slices.Clone(addrs), l.onLane)
}

// laneGater is the coordinator's connection gater: it hands the accepted
// TCP connections to the handshake gate (their negotiation's clock), marks
// the lane's for it, and closes strangers' connections to the lane after
// their handshake. Everything else passes.
type laneGater struct {
	lane *memberLane
	gate *handshakeGate
}

func (g laneGater) InterceptPeerDial(peer.ID) bool               { return true }
func (g laneGater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

func (g laneGater) InterceptAccept(c network.ConnMultiaddrs) bool {
	if g.gate != nil {
		g.gate.noteAccepted(c)
	}
	if g.lane.onLane(c.LocalMultiaddr()) {
		k := string(c.RemoteMultiaddr().Bytes())
		g.lane.mu.Lock()
		g.lane.accepted[k]++
		g.lane.mu.Unlock()
	}
	return true
}

func (g laneGater) InterceptSecured(dir network.Direction, id peer.ID, c network.ConnMultiaddrs) bool {
	if dir != network.DirInbound || !g.lane.onLane(c.LocalMultiaddr()) {
		return true
	}
	if g.lane.isUser != nil && g.lane.isUser(id) {
		return true
	}
	g.lane.mu.Lock()
	g.lane.refused++
	g.lane.mu.Unlock()
	return false
}

func (g laneGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// listenLane starts the members' lane beside the host's listeners. A
// port that is taken leaves the site without a lane: members then dial
// the coordinator's other addresses, as before it had one.
func (c *Coordinator) listenLane(log *slog.Logger) {
	c.lane.isUser = func(id peer.ID) bool {
		u, err := c.service.userByKey(id)
		return err == nil && u != nil
	}
	if len(c.lane.listen) == 0 {
		return
	}
	net := c.host.Network()
	main := net.ListenAddresses()
	if err := net.Listen(c.lane.listen...); err != nil {
		log.Warn("no members' lane: consoles wait in the handshake gate's queue during a storm", "addrs", fmt.Sprint(c.lane.listen), logError, err)
		return
	}
	var lane []ma.Multiaddr
	for _, a := range net.ListenAddresses() {
		if !slices.ContainsFunc(main, a.Equal) {
			lane = append(lane, a)
		}
	}
	c.lane.listening(lane, main)
	log.Info("members' lane", "addrs", fmt.Sprint(lane))
}

// LaneAddrs are where the members' lane listens (none: no lane).
func (c *Coordinator) LaneAddrs() []ma.Multiaddr {
	c.lane.mu.Lock()
	defer c.lane.mu.Unlock()
	if !c.lane.up {
		return nil
	}
	return slices.Clone(c.lane.listen)
}
