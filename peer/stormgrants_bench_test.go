package peer_test

import (
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// grantsDuring asks the coordinator for a grant as the site's
// administrator, a shell on one of the fleet's peers, every grantEvery
// until stop, and returns each granted request's time (issue 16:
// "technicians' ls and grants stay p99 ≤ 100 ms during the storm"). A
// grant is the coordinator's checks, its audit record (written before the
// answer) and the answer; no peer is dialled. Requests refused are counted
// apart, not timed, and the first refusal returned.
//
// Why not every 100 ms as the lists: a grant not used counts as a session
// start in flight for about 10 s, and one technician may have 10 in flight
// (the site's session-start bound, coordinator/sitesessions.go); faster,
// the loop would time the bound's refusals (at 1.1 s it met them). So a
// storm of 2,000 peers gives 4–8 grants a run: the benchmark reports
// their largest time, not a p99.
func grantsDuring(site *coordinatortest.Site[*console.Client], stop <-chan struct{}) (took []time.Duration, refused int, firstRefusal error) {
	tick := time.NewTicker(grantEvery)
	defer tick.Stop()
	ref := ""
	for {
		if ref == "" {
			if views, _, err := site.Admin.PeerPage(site.Ctx(), "status:online", false, 1); err == nil && len(views) == 1 {
				// A peer online again after the restart: a grant for
				// an offline one is refused.
				ref = "id:" + lpeer.ID(views[0].GetPeer().GetId()).String()
			}
		}
		if ref != "" {
			start := time.Now()
			resp, err := site.Admin.Call(site.Ctx(), &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: ref, Capability: grant.Shell}}})
			if err == nil && resp.GetJump() != nil {
				took = append(took, time.Since(start))
			} else {
				refused++
				if firstRefusal == nil {
					firstRefusal = err
				}
			}
		}
		select {
		case <-stop:
			return took, refused, firstRefusal
		case <-tick.C:
		}
	}
}

// grantEvery keeps grantsDuring's unused grants well under one
// technician's share of session starts in flight (10 in about 10 s).
const grantEvery = 2 * time.Second
