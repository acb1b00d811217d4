package coordinator

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Peer statuses as technicians see them.
const (
	StatusOnline      = "online"
	StatusOffline     = "offline"
	StatusLost        = "lost"
	StatusUninstalled = "uninstalled"
	StatusDisabled    = "disabled"
	StatusDeleted     = "deleted"
	// StatusPassive is a passive peer that said it went passive: it holds
	// no connection and listens for a wake command (until its next hello).
	StatusPassive = "passive"
)

// registry is the in-memory view of every peer record, loaded from the
// store at start and written only by peerStore, after each commit
// (peerstore.go): searches scan it
// without touching Badger, and it knows which peers are online (their
// sessions), which the store does not.
type registry struct {
	mu    sync.RWMutex
	peers map[peer.ID]*peerEntry
	// gateways is the same-gateway index (gateways.go), kept with peers.
	gateways gatewayIndex
}

type peerEntry struct {
	rec     *pb.Peer
	session *peerSession
	// lastSeen is the last contact, kept in memory between store writes.
	lastSeen time.Time
	// stats is the latest report; replaced, never mutated, so readers may
	// hold it without the lock.
	stats *pb.PeerStats
	// doc is the cached search view, built with docStatus.
	doc       *SearchDoc
	docStatus string
	// gw is its place in the same-gateway index (gateways.go).
	gw gatewayLinks
}

func newRegistry() *registry {
	return &registry{peers: map[peer.ID]*peerEntry{}, gateways: gatewayIndex{}}
}

// load fills the registry from the store.
func (r *registry) load(st *Store) error {
	return st.View(func(tx *Tx) error {
		recs, err := tx.Peers()
		if err != nil {
			return err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, rec := range recs {
			id := peer.ID(rec.GetId())
			e := &peerEntry{rec: rec, lastSeen: time.Unix(rec.GetLastSeenUnix(), 0)}
			r.peers[id] = e
			r.gateways.file(e)
		}
		return nil
	})
}

// get returns a copy of the record (with the latest stats and contact) and
// whether the peer is online.
func (r *registry) get(id peer.ID) (*pb.Peer, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.peers[id]
	if e == nil {
		return nil, false
	}
	rec := proto.CloneOf(e.rec)
	if e.stats != nil {
		rec.Stats = e.stats
	}
	rec.LastSeenUnix = e.lastSeen.Unix()
	return rec, e.session != nil
}

// put stores rec (already written to the store) in memory.
func (r *registry) put(rec *pb.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := peer.ID(rec.GetId())
	e := r.peers[id]
	if e == nil {
		e = &peerEntry{}
		r.peers[id] = e
	}
	e.rec = proto.CloneOf(rec)
	r.gateways.file(e)
	e.doc = nil
	e.lastSeen = time.Unix(rec.GetLastSeenUnix(), 0)
	if rec.GetStats() != nil {
		e.stats = rec.GetStats()
	}
}

func (r *registry) remove(id peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.peers[id]; e != nil {
		r.gateways.unfile(e)
	}
	delete(r.peers, id)
}

// attach makes s the peer's session, returning the one it replaces.
func (r *registry) attach(id peer.ID, s *peerSession) *peerSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.peers[id]
	if e == nil {
		return nil
	}
	old := e.session
	e.session = s
	r.gateways.seen(e)
	return old
}

// detach clears s if it is still the peer's session; it reports whether it was.
func (r *registry) detach(id peer.ID, s *peerSession, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.peers[id]
	if e == nil || e.session != s {
		return false
	}
	e.session = nil
	e.lastSeen = now
	r.gateways.offline(e)
	return true
}

// touch records a contact (a hello, stats) without a store write.
func (r *registry) touch(id peer.ID, now time.Time, stats *pb.PeerStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.peers[id]; e != nil {
		e.lastSeen = now
		if stats != nil {
			if !sameSearchNAT(e.stats, stats) {
				e.doc = nil // nat: searches what the peer last reported
			}
			e.stats = stats
		}
		if e.session != nil {
			r.gateways.seen(e)
		}
	}
}

func (r *registry) session(id peer.ID) *peerSession {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.peers[id]; e != nil {
		return e.session
	}
	return nil
}

func (r *registry) sessions() []*peerSession {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*peerSession
	for _, e := range r.peers {
		if e.session != nil {
			out = append(out, e.session)
		}
	}
	return out
}

// peerSnapshot is one peer as a read sees it.
type peerSnapshot struct {
	rec      *pb.Peer
	stats    *pb.PeerStats
	online   bool
	lastSeen time.Time
}

// snapshot copies every entry's pointer state for a scan. Records are
// replaced, never mutated in place (but for stats), so sharing them is safe
// for reading.
func (r *registry) snapshot() []peerSnapshot {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]peerSnapshot, 0, len(r.peers))
	for _, e := range r.peers {
		out = append(out, peerSnapshot{rec: e.rec, stats: e.stats, online: e.session != nil, lastSeen: e.lastSeen})
	}
	return out
}

// counts returns the peers that count against the build limits. A
// passive peer (its own connection type, else the site's default,
// defaultType) is not an active one.
func (r *registry) counts(defaultType pb.ConnectionType) (total, active int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.peers {
		if e.rec.GetDeletedUnix() != 0 || e.rec.GetUninstalledUnix() != 0 {
			continue
		}
		total++
		if !isPassiveType(e.rec.GetSettings().GetConnectionType(), defaultType) {
			active++
		}
	}
	return total, active
}

// isPassiveType reports whether a peer of connection type ct is passive,
// on a site whose default-connection-type is def.
func isPassiveType(ct, def pb.ConnectionType) bool {
	if ct == pb.ConnectionType_CONNECTION_TYPE_UNSPECIFIED {
		ct = def
	}
	return ct == pb.ConnectionType_CONNECTION_TYPE_PASSIVE
}

// peerStatus is what technicians see for a peer at now. A passive peer
// is shown passive from its PeerUp{passive} until its next hello, unless
// it has been out of touch past the lost horizon (nothing then says it
// still listens).
func peerStatus(rec *pb.Peer, online bool, lastSeen time.Time, st *pb.Settings, now time.Time) string {
	switch {
	case rec.GetDeletedUnix() != 0:
		return StatusDeleted
	case rec.GetUninstalledUnix() != 0:
		return StatusUninstalled
	case online && rec.GetDisabled():
		return StatusDisabled
	case online:
		return StatusOnline
	case now.Sub(lastSeen) >= days(st.GetLostAfterDays()):
		return StatusLost
	case rec.GetPassiveUnix() != 0:
		return StatusPassive
	}
	return StatusOffline
}

func days(n uint32) time.Duration { return time.Duration(n) * 24 * time.Hour }

// offlineLimit is how long a peer may stay offline before it is deleted:
// its own max-offline-minutes (ephemeral: 5), else the site's horizon.
func offlineLimit(rec *pb.Peer, st *pb.Settings) time.Duration {
	if m := rec.GetSettings().GetMaxOfflineMinutes(); m > 0 {
		return time.Duration(m) * time.Minute
	}
	return days(st.GetDeleteAfterDays())
}

// search scans every entry with keep (which says whether the caller may
// see it and what its status is now) and q, returning the matching docs.
// Docs are cached per entry and rebuilt when the status they were built
// with is no longer the peer's.
func (r *registry) search(keep func(e *peerEntry) (string, bool), q Query) []*SearchDoc {
	var out []*SearchDoc
	var stale []*peerEntry
	var statuses []string
	r.mu.RLock()
	for _, e := range r.peers {
		status, ok := keep(e)
		if !ok {
			continue
		}
		doc := e.doc
		if doc == nil || e.docStatus != status {
			d := NewSearchDoc(e.withStats(), status)
			doc = &d
			stale, statuses = append(stale, e), append(statuses, status)
		}
		if q.Match(doc) {
			out = append(out, doc)
		}
	}
	r.mu.RUnlock()
	if len(stale) > 0 {
		r.mu.Lock()
		for i, e := range stale {
			d := NewSearchDoc(e.withStats(), statuses[i])
			e.doc, e.docStatus = &d, statuses[i]
		}
		r.mu.Unlock()
	}
	return out
}

// withStats is the record with the latest statistics, for search docs.
func (e *peerEntry) withStats() *pb.Peer {
	if e.stats == nil || e.stats == e.rec.GetStats() {
		return e.rec
	}
	rec := proto.CloneOf(e.rec)
	rec.Stats = e.stats
	return rec
}
