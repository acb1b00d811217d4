package jumpoint_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
)

// TestJumpointACLPassesTheStormQueue: after a coordinator restart whose
// reconnect storm holds every place of its main port, the jumpoint's ACL
// fetch takes the members' lane and is answered at once; behind the storm
// it kept its last ACL, callers enrolled since were refused, and the
// coordinator showed it offline after three periods.
func TestJumpointACLPassesTheStormQueue(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	j := runJumpoint(t, jumpointConfig(t, s, "jp-1"))
	s.AnsweredOnLane(t, func() time.Time { return jumpoint.ACLFetchedAt(j) })
}
