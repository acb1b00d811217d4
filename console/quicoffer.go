package console

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// quicObserver reports whether id may tell the console its QUIC mapping
// for hole punching (punch.QUICOffer): the site's coordinator, or a relay
// the coordinator handed for a peer this console reached. A peer or a
// stranger is not asked: a mapping it made up would send the punches of
// the peers this console answers to an address of its choosing.
func (c *Client) quicObserver(id peer.ID) bool {
	if id == c.Site() {
		return true
	}
	c.probing.mu.Lock()
	defer c.probing.mu.Unlock()
	for _, t := range c.probing.targets {
		if slices.Contains(t.relays, id) {
			return true
		}
	}
	return false
}
