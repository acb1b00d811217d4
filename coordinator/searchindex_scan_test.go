package coordinator

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// scanFind is the search the index replaced, kept as the tests' oracle and
// the benchmarks' baseline: every entry of the registry's map, its
// visibility and status read through the record, a doc built for it (the
// old registry cached docs; this one builds them, which is what the first
// search after start cost), the full query matched, then the first limit in
// order and their views.
//
// memo (nil: none) keeps the docs built for the next searches of the same
// unchanged registry (scanDocs).
func (r *registry) scanFind(req searchRequest, memo scanDocs) ([]*pb.PeerView, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var docs []*SearchDoc
	status := map[*SearchDoc]string{}
	for id, e := range r.peers {
		if req.allow != nil && !req.allow(e.rec.GetSettings().GetGroup()) {
			continue
		}
		st := peerStatus(e.rec, e.session != nil, e.lastSeen, req.settings, req.now)
		if !req.includeDeleted && st == StatusDeleted {
			continue
		}
		d := memo[scanDocKey{id, st}]
		if d == nil {
			built := NewSearchDoc(e.withStats(), st)
			d = &built
			if memo != nil {
				memo[scanDocKey{id, st}] = d
			}
		}
		if req.query.Match(d) {
			docs = append(docs, d)
			status[d] = st
		}
	}
	total := len(docs)
	limit := req.limit
	if limit <= 0 {
		limit = total
	}
	docs = FirstSorted(docs, limit)
	views := make([]*pb.PeerView, len(docs))
	for i, d := range docs {
		views[i] = &pb.PeerView{Peer: r.peers[d.ID].view(), Status: status[d]}
	}
	return views, total
}

// scanDocs holds the docs scanFind built, by peer and status, for the next
// searches of one unchanged registry: a test that asks many queries between
// writes builds each peer's doc once per status instead of once per query
// (most of the oracle's cost under -race). Each doc is built exactly as
// without it; a new scanDocs after every write.
type scanDocs map[scanDocKey]*SearchDoc

type scanDocKey struct {
	id     peer.ID
	status string
}

// scanCached is scanFind over the docs the index holds (as the old
// registry cached one per entry once searched): the scan's steady state,
// for the benchmark.
func (r *registry) scanCached(req searchRequest) ([]*pb.PeerView, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	type hit struct {
		d      *SearchDoc
		status string
	}
	var out []hit
	for _, e := range r.peers {
		if req.allow != nil && !req.allow(e.rec.GetSettings().GetGroup()) {
			continue
		}
		st := peerStatus(e.rec, e.session != nil, e.lastSeen, req.settings, req.now)
		if !req.includeDeleted && st == StatusDeleted {
			continue
		}
		if d := r.index.slots[e.slot-1].doc; req.query.matchStatus(d, st) {
			out = append(out, hit{d, st})
		}
	}
	total := len(out)
	limit := req.limit
	if limit <= 0 {
		limit = total
	}
	out = firstSorted(out, limit, func(a, b hit) int { return SearchCompare(a.d, b.d) })
	views := make([]*pb.PeerView, len(out))
	for i, h := range out {
		views[i] = &pb.PeerView{Peer: r.peers[h.d.ID].view(), Status: h.status}
	}
	return views, total
}
