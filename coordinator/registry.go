package coordinator

import (
	"slices"
	"sync"
	"sync/atomic"
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
// (peerstore.go): searches read it (through its search index,
// searchindex.go) without touching Badger, and it knows which peers are
// online (their sessions), which the store does not.
type registry struct {
	mu    sync.RWMutex
	peers map[peer.ID]*peerEntry
	// gateways is the same-gateway index (gateways.go), kept with peers.
	gateways gatewayIndex
	// index is the search index (searchindex.go), kept with peers: every
	// write of an entry's record, session, contact or statistics below
	// files it in the same critical section.
	index *searchIndex
	// remote is the presence of peers other coordinators of the site hold
	// (o/ records of other instances, presence.go), by peer ID, whether or
	// not their record is here yet; empty on Badger.
	remote map[peer.ID]*remotePresence
	// gone holds the revision at which a record was deleted, until the
	// p/ watch has passed it: an older put that the watch hands over
	// late must not bring the record back (presence.go).
	gone map[peer.ID]int64
}

type peerEntry struct {
	rec     *pb.Peer
	session *peerSession
	// rev is the store revision rec was committed at (0 on Badger): a
	// watch event of the same or an older revision is not applied.
	rev int64
	// remote is set while another coordinator holds the peer (and this
	// one has no session of it): the peer is online there.
	remote *remotePresence
	// lastSeen is the last contact, kept in memory between store writes.
	lastSeen time.Time
	// stats is the latest report; replaced, never mutated, so readers may
	// hold it without the lock.
	stats *pb.PeerStats
	// slot is 1 + its place in the search index, 0 when not filed.
	slot uint32
	// gw is its place in the same-gateway index (gateways.go).
	gw gatewayLinks
	// enc is the record as a peer list shows it, encoded (encoded,
	// searchreply.go); nil until a list needs it, and again after any
	// change to rec, stats or lastSeen (searchIndex.refresh drops it).
	enc atomic.Pointer[[]byte]
	// encTable is the same for a table's list (PEER_LIST_VIEW_TABLE).
	encTable atomic.Pointer[[]byte]
}

func newRegistry() *registry {
	return &registry{peers: map[peer.ID]*peerEntry{}, gateways: gatewayIndex{}, index: newSearchIndex(),
		remote: map[peer.ID]*remotePresence{}, gone: map[peer.ID]int64{}}
}

// online reports whether the peer is online anywhere in the site: a
// session here, or another coordinator's presence record.
func (e *peerEntry) online() bool { return e.session != nil || e.remote != nil }

// load fills the registry from the store, and the search index from it:
// the first search after start costs what any other does. It returns the
// store revision it read at (0 on Badger), where following the store
// starts (presence.go), and the presence records it read.
func (r *registry) load(st *Store) (rev int64, presence []storeEvent, err error) {
	err = st.View(func(tx *Tx) error {
		recs, err := tx.Peers()
		if err != nil {
			return err
		}
		if rev, err = tx.revision(); err != nil {
			return err
		}
		if st.shared() {
			if presence, err = readPresence(tx, rev); err != nil {
				return err
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.fill(recs) // at revision 0: every event a watch from rev brings is newer
		return nil
	})
	return rev, presence, err
}

// fill adds records read from the store. The write lock is held.
func (r *registry) fill(recs []*pb.Peer) {
	es := make([]*peerEntry, 0, len(recs))
	for _, rec := range recs {
		id := peer.ID(rec.GetId())
		if r.peers[id] != nil {
			continue // one record per key: never, but not filed twice
		}
		e := &peerEntry{rec: rec, lastSeen: time.Unix(rec.GetLastSeenUnix(), 0), remote: r.remote[id]}
		r.peers[id] = e
		r.gateways.file(e)
		es = append(es, e)
	}
	r.index.fileAll(es)
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
	return rec, e.online()
}

// put stores rec (already written to the store) in memory.
func (r *registry) put(rec *pb.Peer) { r.putAt(rec, 0) }

// putAt stores rec, committed at store revision rev (0: unknown, Badger),
// in memory.
func (r *registry) putAt(rec *pb.Peer, rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putAtLocked(rec, rev)
}

// putAttach is putAt and attach (s) in one step, for a hello's write
// (peerStore.write): a reader never sees the record the hello wrote
// without the session it started. Apart, a passive or reconnecting peer
// showed offline for that moment (during 334 of 1,411 hellos of a passive
// peer at load 9, session 29), and a jump to it then was refused
// peer_offline.
func (r *registry) putAttach(rec *pb.Peer, rev int64, s *peerSession) (old *peerSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putAtLocked(rec, rev)
	return r.attachLocked(peer.ID(rec.GetId()), s)
}

func (r *registry) putAtLocked(rec *pb.Peer, rev int64) {
	id := peer.ID(rec.GetId())
	e := r.peers[id]
	if e == nil {
		e = &peerEntry{remote: r.remote[id]}
		r.peers[id] = e
	} else if rev > 0 && rev < e.rev {
		return // the watch brought a later commit already (presence.go)
	}
	e.rev = max(e.rev, rev)
	e.rec = proto.CloneOf(rec)
	r.gateways.file(e)
	e.lastSeen = time.Unix(rec.GetLastSeenUnix(), 0)
	if rec.GetStats() != nil {
		e.stats = rec.GetStats()
	}
	r.index.file(e)
}

func (r *registry) remove(id peer.ID) { r.removeAt(id, 0) }

// removeAt drops id's record, deleted from the store at revision rev.
func (r *registry) removeAt(id peer.ID, rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.peers[id]
	if e != nil && rev > 0 && rev < e.rev {
		return // put again since (the watch brought it first)
	}
	if e != nil {
		r.gateways.unfile(e)
		r.index.unfile(e)
	}
	delete(r.peers, id)
	if rev > 0 {
		r.gone[id] = max(r.gone[id], rev)
	}
}

// attach makes s the peer's session, returning the one it replaces.
func (r *registry) attach(id peer.ID, s *peerSession) *peerSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attachLocked(id, s)
}

func (r *registry) attachLocked(id peer.ID, s *peerSession) *peerSession {
	e := r.peers[id]
	if e == nil {
		return nil
	}
	old := e.session
	e.session = s
	r.gateways.seen(e)
	r.index.refresh(e)
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
	if e.remote == nil {
		r.gateways.offline(e)
	}
	r.index.refresh(e)
	return true
}

// touch records a contact (a hello, stats) without a store write.
func (r *registry) touch(id peer.ID, now time.Time, stats *pb.PeerStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.peers[id]; e != nil {
		e.lastSeen = now
		// nat: and user: search what the peer last reported: its doc is
		// built again when that changed.
		rebuild := stats != nil && (!sameSearchNAT(e.latestStats(), stats) ||
			!slices.Equal(e.latestStats().GetConsoleUsers(), stats.GetConsoleUsers()))
		if stats != nil {
			e.stats = stats
		}
		if e.online() {
			r.gateways.seen(e)
		}
		if rebuild {
			r.index.file(e)
		} else {
			r.index.refresh(e)
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
	rec   *pb.Peer
	stats *pb.PeerStats
	// online: anywhere in the site; held: by a session here.
	online, held bool
	lastSeen     time.Time
}

// snapshot copies every entry's pointer state for a scan. Records are
// replaced, never mutated in place (but for stats), so sharing them is safe
// for reading.
func (r *registry) snapshot() []peerSnapshot {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]peerSnapshot, 0, len(r.peers))
	for _, e := range r.peers {
		out = append(out, peerSnapshot{rec: e.rec, stats: e.stats, online: e.online(), held: e.session != nil, lastSeen: e.lastSeen})
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
	return statusOf(recFlags(rec, online), lastSeen, st, now)
}

// recFlags are the status inputs of rec, online or not.
func recFlags(rec *pb.Peer, online bool) slotFlags {
	var f slotFlags
	set := func(bit slotFlags, on bool) {
		if on {
			f |= bit
		}
	}
	set(slotDeleted, rec.GetDeletedUnix() != 0)
	set(slotUninstalled, rec.GetUninstalledUnix() != 0)
	set(slotDisabled, rec.GetDisabled())
	set(slotPassive, rec.GetPassiveUnix() != 0)
	set(slotOnline, online)
	return f
}

// statusOf is peerStatus from a peer's status inputs.
func statusOf(f slotFlags, lastSeen time.Time, st *pb.Settings, now time.Time) string {
	c := newStatusClock(st, now)
	return c.of(f, lastSeen)
}

// statusClock is statusOf at one moment, for many peers: the lost
// horizon is subtracted from now once, so that each peer's is one
// comparison (time.Time.Sub per peer was 1.4 ms CPU of a 24,788-match
// `ls tag:linux status:offline` at 100,000 peers, a tenth of it).
type statusClock struct {
	st  *pb.Settings
	now time.Time
	// lostBefore: a peer last seen at or before it is lost. cut says it
	// holds; a horizon longer than a Duration (lost-after-days past 100
	// years) is compared as statusOf always did.
	lostBefore time.Time
	cut        bool
}

// statusCutDays is the longest lost horizon statusClock subtracts once.
const statusCutDays = 100 * 365

func newStatusClock(st *pb.Settings, now time.Time) statusClock {
	c := statusClock{st: st, now: now}
	if d := st.GetLostAfterDays(); d <= statusCutDays {
		c.lostBefore, c.cut = now.Add(-days(d)), true
	}
	return c
}

// lost reports whether a peer last seen at lastSeen is past the horizon:
// now.Sub(lastSeen) >= the horizon (Sub, After and Add read the monotonic
// clock alike when both times carry one).
func (c *statusClock) lost(lastSeen time.Time) bool {
	if c.cut {
		return !lastSeen.After(c.lostBefore)
	}
	return c.now.Sub(lastSeen) >= days(c.st.GetLostAfterDays())
}

// of is the status of a peer with status inputs f, last seen at lastSeen.
func (c *statusClock) of(f slotFlags, lastSeen time.Time) string {
	online := f&slotOnline != 0
	switch {
	case f&slotDeleted != 0:
		return StatusDeleted
	case f&slotUninstalled != 0:
		return StatusUninstalled
	case online && f&slotDisabled != 0:
		return StatusDisabled
	case online:
		return StatusOnline
	case c.lost(lastSeen):
		return StatusLost
	case f&slotPassive != 0:
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

// latestStats is the latest statistics report (the record's until one
// came after it was written).
func (e *peerEntry) latestStats() *pb.PeerStats {
	if e.stats != nil {
		return e.stats
	}
	return e.rec.GetStats()
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
