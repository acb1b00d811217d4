package coordinator

import (
	"net/netip"
	"slices"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The nat: search term matches what a peer last reported of its NAT
// (pb.NatReport, the peer's own account: search shows it, nothing is
// authorised on it). A peer's doc holds every word below that fits its
// report; nat:X matches a peer whose doc holds X.
//
//	none                  the observers saw the host's own address
//	easy                  TCP mapping endpoint-independent (and a NAT)
//	endpoint-independent  the same, with or without a NAT
//	hard                  TCP mapping endpoint-dependent with random ports
//	random                the same
//	sequential            TCP mapping endpoint-dependent, ports from a counter
//	endpoint-dependent    hard or sequential
//	port-preserving       the NAT kept the listening port
//	udp-blocked           UDP does not get out
//	hairpin               the NAT hairpins UDP (the peer's hairpin test)
//	no-hairpin            it does not: hosts behind it reach the peer only by its LAN address
//	unknown               no report, or too few observers to tell
var searchNATWords = []string{"none", "easy", "endpoint-independent", "hard", "random", "sequential", "endpoint-dependent",
	"port-preserving", "udp-blocked", "hairpin", "no-hairpin", "unknown"}

// searchNATItems lists the nat: words of a peer's report.
func searchNATItems(r *pb.NatReport) []string {
	var out []string
	switch tcp := r.GetTcp(); {
	case tcp == "endpoint-independent" && r.GetNoNat():
		out = append(out, "none", tcp)
	case tcp == "endpoint-independent":
		out = append(out, "easy", tcp)
	case tcp == "random":
		out = append(out, "hard", tcp, "endpoint-dependent")
	case tcp == "sequential":
		out = append(out, tcp, "endpoint-dependent")
	default:
		out = append(out, "unknown")
	}
	if r.GetPortPreserving() {
		out = append(out, "port-preserving")
	}
	if r.GetUdp() == "blocked" {
		out = append(out, "udp-blocked")
	}
	switch r.GetHairpinning() {
	case pb.Hairpinning_HAIRPINNING_YES:
		out = append(out, "hairpin")
	case pb.Hairpinning_HAIRPINNING_NO:
		out = append(out, "no-hairpin")
	}
	return out
}

// sameSearchNAT reports whether two statistics give the same nat: words
// (a new report need not rebuild the peer's search doc otherwise).
func sameSearchNAT(a, b *pb.PeerStats) bool {
	x, y := a.GetNat(), b.GetNat()
	return x.GetTcp() == y.GetTcp() && x.GetNoNat() == y.GetNoNat() && x.GetPortPreserving() == y.GetPortPreserving() &&
		(x.GetUdp() == "blocked") == (y.GetUdp() == "blocked") && x.GetHairpinning() == y.GetHairpinning()
}

// NAT kinds a peer may report (natmap's, and blocked for UDP).
var natKinds = []string{"endpoint-independent", "sequential", "random", "unknown"}

// maxNATObservers bounds the observer count kept: a site has a few relays.
const maxNATObservers = 64

// cleanNAT is what the coordinator keeps of a peer's NAT report: a peer
// may say anything (a compromised one lies), so a kind it does not know
// becomes "unknown", an address that is not IP:port is dropped, and the
// observer count is bounded, and a hairpinning that is neither yes nor no
// is not tested — show and --json print nothing the peer chose but these.
// Nil stays nil.
func cleanNAT(r *pb.NatReport) *pb.NatReport {
	if r == nil {
		return nil
	}
	kind := func(k string, blocked bool) string {
		if slices.Contains(natKinds, k) || blocked && k == "blocked" {
			return k
		}
		return "unknown"
	}
	out := &pb.NatReport{Tcp: kind(r.GetTcp(), false), Udp: kind(r.GetUdp(), true), PortPreserving: r.GetPortPreserving(), NoNat: r.GetNoNat(),
		Observers: min(r.GetObservers(), maxNATObservers), UpdatedUnix: r.GetUpdatedUnix()}
	if h := r.GetHairpinning(); h == pb.Hairpinning_HAIRPINNING_YES || h == pb.Hairpinning_HAIRPINNING_NO {
		out.Hairpinning = h
	}
	if ap, err := netip.ParseAddrPort(r.GetPublicAddr()); err == nil {
		out.PublicAddr = ap.String()
	}
	return out
}
