package netlab

import "net/netip"

// PublicRanges returns the ranges the lab uses as its internet: the RFC 5737
// documentation blocks 198.51.100.0/24 (public hosts) and 203.0.113.0/24 (NAT
// routers' public sides).
//
// go-multiaddr's manet.IsPublicAddr, and so libp2p's address filtering,
// AutoNAT and hole punching, treats these blocks as non-public. A jumpmesh
// build run in the lab must therefore be told, by an explicit lab-only
// setting that is never on in production, to treat exactly these prefixes as
// public. This function is the one definition of them.
func PublicRanges() []netip.Prefix {
	return []netip.Prefix{publicHosts, publicRouter}
}

// IsLabPublic reports whether a is on the lab's internet.
func IsLabPublic(a netip.Addr) bool {
	a = a.Unmap()
	return publicHosts.Contains(a) || publicRouter.Contains(a)
}

// CGNATRange is the shared address space (RFC 6598) between a cgnat
// network's home router and its carrier.
func CGNATRange() netip.Prefix { return cgnatSpace }
