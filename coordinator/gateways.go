package coordinator

import (
	"cmp"
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
// with them under the registry's lock (put, remove, load), so a lookup is
// one map read and a walk over the peers behind that one gateway, not a
// scan of the site (BenchmarkSameGateway: 100,000 peers).

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

// gatewayIndex maps a fingerprint to the entries behind it. It is not
// safe on its own: the registry's lock guards it.
type gatewayIndex map[gatewayKey]map[peer.ID]*peerEntry

// move files e (whose record was old, nil for a new entry) under its
// current record's gateway.
func (x gatewayIndex) move(id peer.ID, e *peerEntry, old *pb.Peer) {
	ok, had := false, false
	var from, to gatewayKey
	if old != nil {
		from, had = gatewayOf(old)
	}
	if e != nil {
		to, ok = gatewayOf(e.rec)
	}
	if had && ok && from == to {
		return
	}
	if had {
		x.drop(from, id)
	}
	if ok {
		set := x[to]
		if set == nil {
			set = map[peer.ID]*peerEntry{}
			x[to] = set
		}
		set[id] = e
	}
}

func (x gatewayIndex) drop(k gatewayKey, id peer.ID) {
	if set := x[k]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(x, k)
		}
	}
}

// neighbour is an online peer behind a target's gateway.
type neighbour struct {
	id       peer.ID
	name     string
	group    string
	lastSeen int64 // unix nanoseconds
}

// sameGateway returns at most n online peers behind k, other than except,
// the most recently seen first. Peers disabled by their local user, and
// peers deleted or uninstalled, are not asked to do anything.
func (r *registry) sameGateway(k gatewayKey, except peer.ID, n int) []neighbour {
	if n <= 0 {
		return nil
	}
	out := make([]neighbour, 0, n)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for id, e := range r.gateways[k] {
		if id == except || e.session == nil || e.rec.GetDisabled() || e.rec.GetDeletedUnix() != 0 || e.rec.GetUninstalledUnix() != 0 {
			continue
		}
		c := neighbour{id: id, name: e.rec.GetSettings().GetName(), group: e.rec.GetSettings().GetGroup(), lastSeen: e.lastSeen.UnixNano()}
		// Keep the n most recent in order: an insertion into n slots, so a
		// gateway with thousands of peers costs one pass, no sort.
		i := len(out)
		for i > 0 && newer(c, out[i-1]) {
			i--
		}
		if i == n {
			continue
		}
		if len(out) < n {
			out = append(out, neighbour{})
		}
		copy(out[i+1:], out[i:len(out)-1])
		out[i] = c
	}
	return out
}

// newer orders neighbours: the most recently seen first, then by ID so
// that a choice between equals is the same every time.
func newer(a, b neighbour) bool {
	return cmp.Or(cmp.Compare(b.lastSeen, a.lastSeen), cmp.Compare(a.id, b.id)) < 0
}

// gatewayPeers is how many peers the index files under k (tests).
func (r *registry) gatewayPeers(k gatewayKey) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.gateways[k])
}
