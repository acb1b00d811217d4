package member

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// The members' lane. A coordinator listens for members on a TCP port of
// its own besides the one peers dial (coordinator/lane.go), so that a
// technician's connection does not wait behind a reconnect storm's peers
// in the coordinator's accept queue. Every answer to a member tells it
// (pb.Response.member_lane); the member keeps the last one in its config
// (Config.Lane) and, whenever it connects, dials the lane alone for up to
// LaneHead, then every address it knows as well. The lane is TCP, so the
// coordinator observes the member's TCP mapping as before
// (mesh.CoordinatorOverTCP). A lane that is closed or gone (another
// coordinator answered last, a firewall) costs a connect at most
// LaneHead; one that refuses at once costs nothing.

// LaneHead is how long a member dials the coordinator's members' lane
// alone before its other addresses. During a 2,000-peer storm a lane's
// connection took tens of milliseconds (docs/performance.md).
const LaneHead = time.Second

// maxLaneAddrs bounds the lane addresses kept from one answer.
const maxLaneAddrs = 8

// connect connects the host to the coordinator unless it is: through the
// members' lane first, then at every address it knows. A failed
// connection is CodeCoordinatorDown.
func (c *Client) connect(ctx context.Context) error {
	site := c.SiteInfo()
	if c.host.Network().Connectedness(site.ID) == network.Connected {
		return nil
	}
	c.connectMu.Lock()
	defer c.connectMu.Unlock()
	if c.host.Network().Connectedness(site.ID) == network.Connected {
		return nil
	}
	// Past libp2p's dial backoff: a member's callers pace their own calls
	// (a relay's or jumpoint's ACL period, a technician's command), as
	// the peer daemon paces its redials. With the backoff, a dial that
	// found the coordinator down (restarting: the start of a reconnect
	// storm) kept the member from it for 5 s and more after it was back
	// (TestMemberReconnectsAsSoonAsTheCoordinatorIsBack).
	ctx = network.WithForceDirectDial(ctx, "member to its coordinator: its callers pace their calls")
	if lane := c.laneAddrs(); len(lane) > 0 {
		restore := c.dials.Only(lane)
		laneCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- c.host.Connect(laneCtx, peer.AddrInfo{ID: site.ID, Addrs: lane}) }()
		t := time.NewTimer(LaneHead)
		select {
		case err := <-done:
			t.Stop()
			restore()
			if err == nil {
				return nil
			}
		case <-t.C:
			restore() // the lane's dial goes on; the others join it
		}
	}
	err := c.host.Connect(ctx, site)
	if err != nil && ctx.Err() == nil && c.findSite(ctx) {
		// The site's relays named an address this member did not know
		// (findsite.go): once more, with it.
		err = c.host.Connect(ctx, peer.AddrInfo{ID: site.ID})
	}
	if err != nil {
		return catalog.Errorf(catalog.CodeCoordinatorDown, "(%s at %v: %w)", site.ID, site.Addrs, err)
	}
	return nil
}

// dropLane stops this client dialing the lane until an answer tells it
// again (learnLane); false if it had none or had dropped it already.
// Its addresses leave the host's peerstore, so that no dial to the site
// takes the lane meanwhile. Call drops it when the lane closed a request's
// connection twice in a row. A technician removed gets no answer that
// tells the lane; a member that got there another way (a coordinator
// restarting twice under its calls) gets one at its next answer, so a
// relay or jumpoint, which lives for months, keeps the lane.
func (c *Client) dropLane() bool {
	lane := c.laneAddrs()
	c.mu.Lock()
	if c.laneOff || len(lane) == 0 {
		c.mu.Unlock()
		return false
	}
	c.laneOff = true
	c.mu.Unlock()
	ps := c.host.Peerstore()
	for _, a := range lane {
		ps.SetAddr(c.site.ID, a, 0)
	}
	return true
}

// laneAddrs are the lane's addresses from the config (none once dropped).
func (c *Client) laneAddrs() []ma.Multiaddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.laneOff {
		return nil
	}
	var out []ma.Multiaddr
	for _, s := range c.config.Lane {
		if a, err := ma.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// laneList is the lane an answer told (raw, binary multiaddrs) as the
// config keeps it: TCP addresses of site only, without /p2p/, at most
// maxLaneAddrs.
func laneList(site peer.ID, raw [][]byte) []string {
	var lane []string
	for _, b := range raw {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil || len(lane) >= maxLaneAddrs {
			continue
		}
		if a = mesh.CoordinatorAddr(site, a); a == nil {
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			continue
		}
		lane = append(lane, a.String())
	}
	return lane
}

// learnLane keeps the lane an answer told (raw, binary multiaddrs): TCP
// addresses only, without /p2p/. An answer without one drops the lane
// kept: the coordinator that answered has none.
func (c *Client) learnLane(raw [][]byte) {
	lane := laneList(c.site.ID, raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(lane) > 0 {
		c.laneOff = false // an answer told it: dropLane's cause is gone
	}
	if slices.Equal(lane, c.config.Lane) {
		return
	}
	cfg := *c.config
	cfg.Lane = lane
	if c.files.Dir != "" {
		if err := c.files.SaveConfig(&cfg); err != nil {
			return // the next answer tries again
		}
	}
	c.config.Lane = lane
}
