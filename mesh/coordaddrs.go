package mesh

import (
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// MaxCoordinatorAddrs bounds the coordinator addresses a party keeps from
// one list (a site runs a handful of coordinators, each with a few
// addresses): a list past it is cut, so a faulty or hostile answer cannot
// make a party keep or dial without end.
const MaxCoordinatorAddrs = 64

// CoordinatorAddrs reads a list of the site's coordinator addresses as a
// coordinator sends it (a peer's welcome, a control answer; binary
// multiaddrs) and keeps what a party may dial to reach the site: direct
// addresses, either without /p2p/ or ending in /p2p/<site> (stripped), no
// duplicates, at most MaxCoordinatorAddrs. It drops, and counts in
// dropped, whatever does not parse, names another peer ID (the site's
// coordinators share the site's ID: an address of another ID is not a
// coordinator's, whoever says so), or goes through a relay.
//
// The list is a hint, not a trust decision: every dial proves the site's
// ID in its secure handshake, so an address of an impostor costs a failed
// dial, never a session. An empty result means "no news": callers keep the
// list they have rather than forget every coordinator.
func CoordinatorAddrs(site peer.ID, raw [][]byte) (kept []ma.Multiaddr, dropped int) {
	for _, b := range raw {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			dropped++
			continue
		}
		if a = CoordinatorAddr(site, a); a == nil || len(kept) >= MaxCoordinatorAddrs || containsAddr(kept, a) {
			dropped++
			continue
		}
		kept = append(kept, a)
	}
	return kept, dropped
}

// CoordinatorAddr is a without a trailing /p2p/<site>, or nil when a
// names another peer ID, has /p2p/ elsewhere, or goes through a relay.
func CoordinatorAddr(site peer.ID, a ma.Multiaddr) ma.Multiaddr {
	transport, id := peer.SplitAddr(a)
	if transport == nil || (id != "" && id != site) || IsCircuit(transport) {
		return nil
	}
	if _, err := transport.ValueForProtocol(ma.P_P2P); err == nil {
		return nil
	}
	return transport
}

// MergeAddrs is a followed by what of b is not in a.
func MergeAddrs(a, b []ma.Multiaddr) []ma.Multiaddr {
	out := append([]ma.Multiaddr(nil), a...)
	for _, x := range b {
		if !containsAddr(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// SameAddrs reports whether a and b hold the same addresses in any order.
func SameAddrs(a, b []ma.Multiaddr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsAddr(b, x) {
			return false
		}
	}
	return true
}

func containsAddr(list []ma.Multiaddr, a ma.Multiaddr) bool {
	for _, x := range list {
		if x.Equal(a) {
			return true
		}
	}
	return false
}
