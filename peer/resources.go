package peer

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/x/rate"
)

// connsPerAddress bounds the connections the peer holds with one IP
// address at once, each direction counted.
//
// Every relayed connection a peer accepts carries its relay's address
// (/ip4/RELAY/…/p2p-circuit): one per technician reaching it through that
// relay, besides the peer's own connection and fresh observations to it. A
// relay carries up to 128 circuits per member by default
// (relay.DefaultResources().MaxCircuitsPerPeer); libp2p's cap of 8 per
// address would refuse the ninth technician.
const connsPerAddress = 256

// resourceManager is the peer host's resource manager: libp2p's default
// limits scaled to the machine (what libp2p builds when given none), with
// no connection rate per address and connsPerAddress.
//
// libp2p's default rate of 0.2 new connections a second per IPv4 address,
// 16 at once, counts every circuit as one more connection from the relay's
// address. In the lab's grid (6 consoles, 2 runs) the sequential peer,
// whose each punch also dials the relay for a fresh observation, spent the
// burst in run 2: its upgrader refused the next circuit ("rate limit
// exceeded"), after having answered the relay's stop stream, so the relay
// told the console CONNECTION_FAILED (203) — 3 runs of 3. Circuits come only
// from members, through the site's relays (their ACL); a stranger dialling
// the listening port still meets libp2p's system and transient limits, the
// handshake, and a peer that serves nothing without a grant.
func resourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: connsPerAddress}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: connsPerAddress}}),
		rcmgr.WithConnRateLimiters(&rate.Limiter{}))
	if err != nil {
		return nil, fmt.Errorf("peer resource manager: %w", err)
	}
	return rm, nil
}
