package coordinator

import (
	"net"
	"net/netip"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The same-gateway index: which peers share a default gateway, the
// network fingerprint Wake-on-LAN needs (a peer can only wake a host on
// its own LAN). Peers report their gateway's IP and MAC with their facts;
// two peers are on the same network when both are equal and neither is
// empty. A peer whose gateway MAC is unknown (no ARP entry, a tunnel, an
// isolated network) has no neighbours.
//
// The index lives in the registry, beside the cached records, and changes
// with them under the registry's lock (load, put, remove: the record's
// gateway; attach, detach, touch: online and most recently seen), so a
// lookup is one map read and the first entries of that network's online
// list, not a scan of the site nor of the LAN (BenchmarkSameGateway:
// 100,000 peers).

// gatewayKey is a peer's network fingerprint, normalised (the IP as
// netip writes it, the MAC lower-case with colons).
type gatewayKey struct{ ip, mac string }

func (k gatewayKey) String() string { return k.ip + " (" + k.mac + ")" }

// gatewayOf is rec's fingerprint; ok is false when either half is missing
// or unreadable.
func gatewayOf(rec *pb.Peer) (gatewayKey, bool) {
	return gatewayOfInfo(rec.GetInfo())
}

func gatewayOfInfo(info *pb.PeerInfo) (gatewayKey, bool) {
	ip, err := netip.ParseAddr(strings.TrimSpace(info.GetGatewayIp()))
	if err != nil {
		return gatewayKey{}, false
	}
	mac, err := net.ParseMAC(strings.TrimSpace(info.GetGatewayMac()))
	if err != nil || isZeroMAC(mac) {
		return gatewayKey{}, false
	}
	return gatewayKey{ip: ip.Unmap().String(), mac: mac.String()}, true
}

func isZeroMAC(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}

// gatewayIndex maps a fingerprint to the peers behind it. It is not safe
// on its own: the registry's lock guards it and every peerEntry's links.
type gatewayIndex map[gatewayKey]*gatewaySet

// gatewaySet is one network: how many peers are filed behind it, and its
// online ones in a list, the most recently seen first. The registry
// moves a peer to the front at every contact (hello, statistics), so a
// lookup reads the first few entries whatever the size of the LAN.
type gatewaySet struct {
	peers int
	head  *peerEntry
}

// gatewayLinks are a peerEntry's place in the index.
type gatewayLinks struct {
	key        gatewayKey
	filed      bool
	linked     bool // in its set's online list
	prev, next *peerEntry
}

// file puts e behind its record's gateway, moving it when the record's
// gateway changed.
func (x gatewayIndex) file(e *peerEntry) {
	k, ok := gatewayOf(e.rec)
	if e.gw.filed && ok && e.gw.key == k {
		return
	}
	x.unfile(e)
	if !ok {
		return
	}
	set := x[k]
	if set == nil {
		set = &gatewaySet{}
		x[k] = set
	}
	set.peers++
	e.gw.key, e.gw.filed = k, true
	if e.online() {
		x.seen(e)
	}
}

// unfile takes e out of the index (a removed peer, a gateway lost).
func (x gatewayIndex) unfile(e *peerEntry) {
	if !e.gw.filed {
		return
	}
	x.offline(e)
	if set := x[e.gw.key]; set != nil {
		if set.peers--; set.peers <= 0 {
			delete(x, e.gw.key)
		}
	}
	e.gw = gatewayLinks{}
}

// seen moves an online e to the front of its set's list.
func (x gatewayIndex) seen(e *peerEntry) {
	if !e.gw.filed {
		return
	}
	set := x[e.gw.key]
	if set.head == e {
		return
	}
	x.offline(e)
	e.gw.next, e.gw.linked = set.head, true
	if set.head != nil {
		set.head.gw.prev = e
	}
	set.head = e
}

// offline takes e out of its set's online list.
func (x gatewayIndex) offline(e *peerEntry) {
	if !e.gw.linked {
		return
	}
	if e.gw.prev != nil {
		e.gw.prev.gw.next = e.gw.next
	} else if set := x[e.gw.key]; set != nil {
		set.head = e.gw.next
	}
	if e.gw.next != nil {
		e.gw.next.gw.prev = e.gw.prev
	}
	e.gw.prev, e.gw.next, e.gw.linked = nil, nil, false
}

// neighbour is an online peer behind a target's gateway.
type neighbour struct {
	id       peer.ID
	name     string
	group    string
	lastSeen int64 // unix nanoseconds
	// holder is the instance of the coordinator holding it, when another
	// does (sameGatewayElsewhere).
	holder string
}

// sameGateway returns at most n online peers behind k, other than except,
// the most recently seen first. Peers disabled by their local user, and
// peers deleted or uninstalled, are not asked to do anything; nor are
// peers another coordinator holds (presence.go): only a session here can
// carry the order.
func (r *registry) sameGateway(k gatewayKey, except peer.ID, n int) []neighbour {
	return r.neighbours(k, except, n, false)
}

// sameGatewayElsewhere is sameGateway for the peers that other
// coordinators of the site hold (their presence records, presence.go):
// the wakers this coordinator can order only through them (wakeremote.go).
func (r *registry) sameGatewayElsewhere(k gatewayKey, except peer.ID, n int) []neighbour {
	return r.neighbours(k, except, n, true)
}

// neighbours is sameGateway (elsewhere false) or sameGatewayElsewhere.
func (r *registry) neighbours(k gatewayKey, except peer.ID, n int, elsewhere bool) []neighbour {
	r.mu.RLock()
	defer r.mu.RUnlock()
	set := r.gateways[k]
	if set == nil || n <= 0 {
		return nil
	}
	out := make([]neighbour, 0, n)
	for e := set.head; e != nil && len(out) < n; e = e.gw.next {
		id := peer.ID(e.rec.GetId())
		held := e.session != nil
		if elsewhere {
			held = e.session == nil && e.remote != nil
		}
		if id == except || !held || e.rec.GetDisabled() || e.rec.GetDeletedUnix() != 0 || e.rec.GetUninstalledUnix() != 0 {
			continue
		}
		nb := neighbour{id: id, name: e.rec.GetSettings().GetName(), group: e.rec.GetSettings().GetGroup(), lastSeen: e.lastSeen.UnixNano()}
		if elsewhere {
			nb.holder = e.remote.instance
		}
		out = append(out, nb)
	}
	return out
}

// gatewayPeers is how many peers the index files under k, and how many
// of them are in its online list (tests).
func (r *registry) gatewayPeers(k gatewayKey) (filed, online int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	set := r.gateways[k]
	if set == nil {
		return 0, 0
	}
	for e := set.head; e != nil; e = e.gw.next {
		online++
	}
	return set.peers, online
}
