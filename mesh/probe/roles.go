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
	kindRandom  = "random"
	kindEasy    = "endpoint-independent"
	kindUnknown = "unknown"
	kindBlocked = "blocked"
)

// Roles decides who opens the sockets: the side whose NAT maps every
// destination to a new random port is hard (it opens the sockets), the
// other probes, and probing needs the hard side to know the easy side's
// mapping:
//   - peer "random", console's udp_mapping set, console not "random" → PEER;
//   - console "random" (or peer "endpoint-independent" and the console's
//     kind unknown), peer's udp_mapping set, peer not "random" → CONSOLE;
//   - otherwise (either "blocked", both "random", nothing known) NONE.
//
// Two random NATs are left out: the easy side's probes would leave from a
// new port per destination too, and nothing could meet.
func Roles(peerSide, consoleSide *pb.ProbeSide) pb.ProbeStart_Hard {
	pk, ck := peerSide.GetKind(), consoleSide.GetKind()
	switch {
	case pk == kindBlocked || ck == kindBlocked:
		return pb.ProbeStart_NONE
	case pk == kindRandom && ck != kindRandom && consoleSide.GetUdpMapping() != "":
		return pb.ProbeStart_PEER
	case pk != kindRandom && (ck == kindRandom || pk == kindEasy && (ck == kindUnknown || ck == "")) && peerSide.GetUdpMapping() != "":
		return pb.ProbeStart_CONSOLE
	}
	return pb.ProbeStart_NONE
}
