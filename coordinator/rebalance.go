package coordinator

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Spreading the peers over the site's coordinators (issue 16 part 2). A
// peer stays with the coordinator its connection reached until that
// connection ends: after a coordinator is restarted, the others hold all
// its peers, and after a rolling restart of every member (a patch) the
// member restarted last holds none and the first most of the site. So
// every RebalanceEvery, each coordinator on a shared store compares the
// peers it holds with its share of the site's online peers, counted from
// the presence records every holder writes (o/, followed by watch):
// share = ⌈online ÷ live members⌉. Holding more than the share by more
// than a slack (max(rebalanceSlack, share ÷ 10)), it asks some of its
// peers to move to the member that holds the fewest: a PeerMove naming
// that member's addresses, through each peer's send queue. The peer ends
// its session and dials those addresses only, once; if that fails it
// dials every address it knows, as after any lost connection.
//
// How many a round: the excess, and at most half of what the target
// admits in a round (connection-rate ÷ live members × the interval ÷ 2),
// so moving never makes a storm. Two members above their share at once
// both send towards the least loaded one: the next round sees where the
// peers landed and corrects; each member counts only the peers it holds,
// so none is asked twice in a round. A peer in a console session loses
// nothing: sessions run from console to peer, not through the
// coordinator. Badger (one coordinator) and a member alone never move a
// peer, nor does anyone a peer behind jumpoints (it reaches the site only
// through their tunnels).

// rebalanceSlack is the least excess over its share a member keeps
// without moving peers: a handful of peers is no imbalance worth a
// reconnection.
const rebalanceSlack = 4

// DefaultRebalanceEvery is how often a coordinator compares its peers with
// its share (Resources.RebalanceEvery).
const DefaultRebalanceEvery = 10 * time.Second

// Rebalance moves peers this coordinator holds beyond its share to the
// member that holds the fewest; it returns how many it asked to move.
func (s *Service) Rebalance() int {
	if !s.store.shared() {
		return 0
	}
	members := s.members()
	if len(members) < 2 {
		return 0
	}
	held, movable := s.peers.movableSessions()
	counts := s.peers.holders()
	self := members[0].Instance
	counts[self] = held
	total := 0
	for _, m := range members {
		total += counts[m.Instance]
	}
	share := int(math.Ceil(float64(total) / float64(len(members))))
	excess := held - share
	if excess <= max(rebalanceSlack, share/10) {
		return 0
	}
	target := members[1]
	for _, m := range members[2:] {
		if counts[m.Instance] < counts[target.Instance] {
			target = m
		}
	}
	if counts[target.Instance] >= share || len(target.Addrs) == 0 {
		return 0 // the others are full too: the share is rounding
	}
	every := s.resources.RebalanceEvery
	perRound := int(float64(s.rateShare(rate.Limit(s.settings().GetConnectionRate()))) * every.Seconds() / 2)
	n := min(excess, share-counts[target.Instance], max(1, perRound), len(movable))
	addrs := make([][]byte, len(target.Addrs))
	for i, a := range target.Addrs {
		addrs[i] = a.Bytes()
	}
	m := &pb.PeerDown{Body: &pb.PeerDown_Move{Move: &pb.PeerMove{Addrs: addrs,
		Reason: "coordinator " + self + " holds more than its share; " + target.Instance + " fewer"}}}
	moved := 0
	for _, sess := range movable[:n] {
		if s.push(sess, m) {
			moved++
		}
	}
	s.log.Info("moving peers to a member that holds fewer", "moved", moved, "held", held, "share", share,
		"to", target.Instance, "its", counts[target.Instance])
	return moved
}

// movableSessions is how many peers this coordinator holds, and the
// sessions of those that may move: not those behind jumpoints, which reach
// the site only through their jumpoints' tunnels (peer/move.go ignores
// the order there too).
func (r *registry) movableSessions() (held int, movable []*peerSession) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.peers {
		if e.session == nil {
			continue
		}
		held++
		if len(e.rec.GetJumpoints()) == 0 {
			movable = append(movable, e.session)
		}
	}
	return held, movable
}

// holders counts the peers other coordinators hold, by instance, from
// their presence records.
func (r *registry) holders() map[string]int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[string]int{}
	for _, p := range r.remote {
		out[p.instance]++
	}
	return out
}
