package probe

import (
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Protocol is the stream protocol of the exchange; the peer opens it over
// the relayed connection a console made to it.
const Protocol = "/jumpmesh/probe/1.0.0"

// Budget and timing of one exchange (see the package doc for the
// reasoning).
const (
	MaxSockets = 256                  // openers per exchange (hard side)
	MaxProbes  = 1024                 // probes per exchange (easy side)
	OpenerGap  = time.Millisecond     // between two openers
	ProbeGap   = 2 * time.Millisecond // between two probes
	Timeout    = 8 * time.Second      // one exchange, end to end
	ProxyIdle  = 60 * time.Second     // a proxy with no packet for this long ends
	maxMsg     = 4 << 10              // one stream message
	minPort    = 1024                 // the lowest port probed
	hitGrace   = 1 * time.Second      // the easy side waits this long after its last probe for a late hit
	readyWait  = 2 * time.Second      // and this long after a hit for ready
	directWait = 2 * time.Second      // the hard side waits this long for the direct connection to show
)

// NAT mapping kinds (natmap.Kind's strings) that Roles reads.
const (
	kindRandom     = "random"
	kindSequential = "sequential"
	kindEasy       = "endpoint-independent"
	kindUnknown    = "unknown"
	kindBlocked    = "blocked"
)

// Roles decides who opens the sockets: the side whose NAT maps every
// destination to a new random port is hard (it opens the sockets), the
// other probes, and probing needs the hard side to know the easy side's
// mapping:
//   - peer "random", console's udp_mapping set, console
//     "endpoint-independent" or unknown → PEER;
//   - console "random" or "sequential" (or peer "endpoint-independent"
//     and the console's kind unknown), peer's udp_mapping set, peer
//     "endpoint-independent" or unknown → CONSOLE;
//   - otherwise (either "blocked", both "random", a "sequential" easy
//     side, nothing known) NONE.
//
// A sequential console is hard as a random one is: each of its sockets
// takes a new port, and it predicts nothing itself (a sequential peer
// predicts: mesh/punch). Until a console reached its coordinator over TCP
// (mesh.CoordinatorOverTCP) it told one QUIC observation, kind unknown,
// and probed as the hard side; with two it tells "sequential".
//
// The hard side must have seen its own UDP mapping (its public IP): its
// sockets open towards the easy side from that IP, and the easy side aims
// its probes at it. A side with no UDP observation at all — a console
// whose QUIC flows to every observer were dropped (UDP blocked), which
// tells kind "" — is not hard: the exchange would fail ("the hard side's
// public IP "" is not an address") and, until 2026-12-03, take the
// attempts a TCP hole punch would have used (the lab's NAT grid:
// udp-blocked consoles × easy and cgnat peers stayed relayed).
//
// The easy side must keep one mapping for every destination: behind a
// random or sequential NAT its probes to the hard side would leave from a
// new port, not the mapping the hard side's sockets opened towards, and
// nothing could meet (in the lab's grid a sequential console spent its
// 1,024 probes on a hard peer for nothing).
func Roles(peerSide, consoleSide *pb.ProbeSide) pb.ProbeStart_Hard {
	pk, ck := peerSide.GetKind(), consoleSide.GetKind()
	switch {
	case pk == kindBlocked || ck == kindBlocked:
		return pb.ProbeStart_NONE
	case pk == kindRandom && peerSide.GetPublicIp() != "" && mayProbe(ck) && consoleSide.GetUdpMapping() != "":
		return pb.ProbeStart_PEER
	case mayProbe(pk) && (ck == kindRandom || ck == kindSequential || pk == kindEasy && (ck == kindUnknown || ck == "")) && consoleSide.GetPublicIp() != "" && peerSide.GetUdpMapping() != "":
		return pb.ProbeStart_CONSOLE
	}
	return pb.ProbeStart_NONE
}

// mayProbe reports whether a side of kind k can be the easy side: its NAT
// keeps one mapping for every destination, or nothing says it does not.
func mayProbe(k string) bool { return k == kindEasy || k == kindUnknown || k == "" }
