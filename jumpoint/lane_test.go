package jumpoint_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
)

// TestJumpointACLPassesTheStormQueue: after a coordinator restart whose
// reconnect storm holds every place of its main port, the jumpoint's ACL
// fetch is answered at once, over TCP (its member client takes the
// members' lane first); behind the storm it kept its last ACL, callers
// enrolled since were refused, and the coordinator showed it offline after
// three periods. Unlike a relay's, a jumpoint's host dials the site for
// more than its calls (hole punching, its relays' reservations): such a
// dial may take the main port once the lane's first handshake has
// shortened the storm's hold on it, and a call then uses that connection,
// so only TCP is asserted here; TestRelayACLPassesTheStormQueue and
// mesh/member's lane tests show the lane itself.
func TestJumpointACLPassesTheStormQueue(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	j := runJumpoint(t, jumpointConfig(t, s, "jp-1"))
	s.AnsweredDuringStorm(t, j.ID(), func() time.Time { return jumpoint.ACLFetchedAt(j) })
}
