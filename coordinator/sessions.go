package coordinator

import (
	"bytes"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Sessions as the coordinator knows them: the grants in flight (signed, not
// yet used at the peer), the sessions each peer reports open, and the
// session events peers report for the audit log.
//
// A peer is not trusted to say who used it: it may be patched, or enrolled
// by a technician for the purpose. A start or end is stored only for a
// grant this coordinator issued for that very peer (found by its nonce in
// the audit log), and who (user, technician) comes from that grant, never
// from the report. A refusal is kept either way (a forged or stolen grant
// is worth knowing about), but only the holder's own grant gives it a
// user; otherwise it has none and the technician is the peer's word. What the peer alone knows (capability used, detail, exit, bytes)
// is kept, each free-text field cut to MaxEventField bytes, and a peer's
// events pass a token bucket (EventBurst, then EventRate per second).

// Bounds of what a peer may add to the audit log.
const (
	// MaxEventField bounds each free-text field of a reported event
	// (detail, exit error, refusal detail); longer text is cut and ends
	// with truncatedMark. A command line or a path fits easily.
	MaxEventField = 1 << 10
	// EventBurst and EventRate are a peer's token bucket for session
	// events: a browser through a forward opens some tens of channels at
	// once (a start and an end each), then a few per second. A peer past
	// it loses those events from the audit log (counted, logged), nothing
	// else. Worst case for one peer: 5 events of ~2.2 KiB a second, all
	// attributed to the technicians whose grants it holds.
	EventBurst = 100
	EventRate  = 5
	// maxEventToken bounds identifiers a peer reports (session ID, code).
	maxEventToken = 64
	truncatedMark = "…[truncated]"
)

// StartSlot is how long an unused grant counts against max-session-starts:
// a console that got a grant connects and opens its first channel within
// seconds; one that never does (or a technician hoarding grants) stops
// holding a slot after this, long before the grant expires.
const StartSlot = 10 * time.Second

// inflightGrant is a grant counted against max-session-starts.
type inflightGrant struct {
	user    string
	expires time.Time
}

// openSession is a session a peer reported started and not yet ended.
type openSession struct {
	user  string
	nonce []byte
}

// jumps tracks what the grant checks need between requests: session starts
// in flight and the sessions each peer reports open.
type jumps struct {
	mu       sync.Mutex
	inflight map[string]inflightGrant           // grant nonce →
	active   map[peer.ID]map[string]openSession // peer → session id →
	buckets  map[peer.ID]*rate.Limiter          // session events, per peer
	// shared, on a store of several coordinators, writes the open
	// sessions where the others read them (sitesessions.go).
	shared *sharedSessions
	// refused counts events not tied to a grant issued for their peer;
	// limited counts events over the peer's token bucket.
	refused, limited atomic.Int64
}

func newJumps() *jumps {
	return &jumps{inflight: map[string]inflightGrant{}, active: map[peer.ID]map[string]openSession{},
		buckets: map[peer.ID]*rate.Limiter{}}
}

// startShare is how many session starts one technician may have in flight:
// max-session-starts-per-technician when set, else half the site's bound,
// and never less than one.
func startShare(st *pb.Settings) int {
	site := int(st.GetMaxSessionStarts())
	share := site / 2
	if n := perTechnicianStarts(st); n > 0 {
		share = min(n, site)
	}
	return max(1, share)
}

// reserve takes a slot for a session start for user, failing when the
// site's max or the user's share is in flight. On a shared store current
// runs first in the reservation's transaction (peerStore.current): the
// grant's peer record must still be the one it was built from. On Badger
// the registry is the store's only writer, so what it holds is current.
func (j *jumps) reserve(nonce []byte, user string, now time.Time, st *pb.Settings, current func(tx *Tx) error) error {
	if j.shared != nil {
		return j.shared.reserve(nonce, user, now, st, current) // the site's count (sitesessions.go)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	mine := 0
	for n, g := range j.inflight {
		if !now.Before(g.expires) {
			delete(j.inflight, n)
		} else if g.user == user {
			mine++
		}
	}
	if site := int(st.GetMaxSessionStarts()); len(j.inflight) >= site {
		return catalog.Errorf(catalog.CodeServerBusy, "(%d session starts in flight)", site)
	}
	if share := startShare(st); mine >= share {
		return catalog.Errorf(catalog.CodeServerBusy, "(you have %d session starts in flight, your share of the site's %d; unused grants stop counting after %s)",
			mine, st.GetMaxSessionStarts(), StartSlot)
	}
	j.inflight[string(nonce)] = inflightGrant{user: user, expires: now.Add(StartSlot)}
	return nil
}

// release frees the start slot of a grant: used at the peer, or not issued.
func (j *jumps) release(nonce []byte) {
	j.mu.Lock()
	delete(j.inflight, string(nonce))
	j.mu.Unlock()
	if j.shared != nil {
		j.shared.release(nonce)
	}
}

func (j *jumps) started(id peer.ID, sessionID, user string, nonce []byte) {
	j.mu.Lock()
	delete(j.inflight, string(nonce))
	if j.active[id] == nil {
		j.active[id] = map[string]openSession{}
	}
	j.active[id][sessionID] = openSession{user: user, nonce: nonce}
	j.mu.Unlock()
	if j.shared != nil {
		j.shared.started(id, sessionID, user, nonce) // a store write: outside the lock
	}
}

// ended forgets a session and returns the nonce of its grant, if known.
func (j *jumps) ended(id peer.ID, sessionID string) []byte {
	j.mu.Lock()
	s, ok := j.active[id][sessionID]
	if ok {
		delete(j.active[id], sessionID)
	}
	j.mu.Unlock()
	if !ok {
		return nil
	}
	if j.shared != nil {
		j.shared.ended(id, sessionID)
	}
	return s.nonce
}

// peerGone forgets the sessions of a peer that went offline.
func (j *jumps) peerGone(id peer.ID) {
	j.mu.Lock()
	_, had := j.active[id]
	delete(j.active, id)
	j.mu.Unlock()
	if had && j.shared != nil {
		j.shared.peerGone(id)
	}
}

// holders lists the users in a session with the peer, other than user.
func (j *jumps) holders(id peer.ID, user string) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range j.active[id] {
		if s.user != user {
			seen[s.user] = true
		}
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// allowEvent takes a token from the peer's bucket. Buckets outlive the
// peer's connection (reconnecting must not refill them); sweepBuckets
// drops the full ones.
func (j *jumps) allowEvent(id peer.ID) bool {
	j.mu.Lock()
	b := j.buckets[id]
	if b == nil {
		b = rate.NewLimiter(EventRate, EventBurst)
		j.buckets[id] = b
	}
	j.mu.Unlock()
	return b.Allow()
}

// sweepBuckets forgets buckets that have refilled: a new one is the same.
func (j *jumps) sweepBuckets() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, b := range j.buckets {
		if b.Tokens() >= EventBurst {
			delete(j.buckets, id)
		}
	}
}

// SessionEventsDropped returns how many session events peers reported that
// were not stored: refused (no grant issued for that peer) and limited
// (over the peer's token bucket).
func (s *Service) SessionEventsDropped() (refused, limited int64) {
	return s.jumps.refused.Load(), s.jumps.limited.Load()
}

// sessionEvent records what a peer reports about a session.
func (s *Service) sessionEvent(id peer.ID, ev *pb.SessionEvent) {
	if !s.jumps.allowEvent(id) {
		if s.jumps.limited.Add(1)%EventBurst == 1 {
			s.log.Warn("session events over the peer's rate, not audited", logPeer, id, "dropped", s.jumps.limited.Load())
		}
		return
	}
	nonce, sessionID := ev.GetGrantNonce(), boundText(ev.GetSessionId(), maxEventToken)
	if ev.GetEnd() {
		if n := s.jumps.ended(id, sessionID); len(nonce) == 0 {
			nonce = n // a peer of an older version names the grant only at the start
		}
	}
	g, err := s.issuedGrant(id, nonce)
	switch {
	case ev.GetRefused() != nil && (err != nil || !bytes.Equal(ev.GetTechnician(), g.GetTechnician())):
		// A refusal of a grant the peer could not verify, or presented by
		// someone else than its holder, is worth keeping, but who tried is
		// only the peer's word: no user, the technician as reported.
		g = &pb.AuditEvent{Technician: ev.GetTechnician()}
		if len(g.Technician) > maxEventToken {
			g.Technician = g.Technician[:maxEventToken]
		}
	case err != nil:
		if s.jumps.refused.Add(1)%EventBurst == 1 {
			s.log.Warn("session event refused", logPeer, id, logError, err, "refused", s.jumps.refused.Load())
		}
		return
	}
	rec, _ := s.peers.get(id)
	a := &pb.AuditEvent{User: g.GetUser(), Technician: g.GetTechnician(), Peer: []byte(id), PeerName: rec.GetSettings().GetName(),
		Capability: ev.GetCapability(), Detail: boundText(ev.GetDetail(), MaxEventField), SessionId: sessionID,
		BytesIn: ev.GetBytesIn(), BytesOut: ev.GetBytesOut(), Exit: boundExit(ev.GetExit())}
	switch {
	case ev.GetRefused() != nil:
		a.Kind, a.Code = AuditRefused, boundText(ev.GetRefused().GetCode(), maxEventToken)
		a.Detail = boundText(strings.TrimSpace(ev.GetRefused().GetDetail()+" "+ev.GetDetail()), MaxEventField)
		s.jumps.release(nonce)
	case ev.GetEnd():
		a.Kind = AuditEnd
	default:
		a.Kind = AuditStart
		s.jumps.started(id, sessionID, g.GetUser(), nonce)
		now := s.clock.Now()
		if _, err := s.peers.modify(id, func(rec *pb.Peer) error { rec.LastAccessUnix = now.Unix(); return nil }); err != nil {
			s.log.Warn("recording last access", logPeer, id, logError, err)
		}
	}
	s.audit(a)
}

// issuedGrant is the audit event of the grant with nonce, which must have
// been issued for peer id.
func (s *Service) issuedGrant(id peer.ID, nonce []byte) (*pb.AuditEvent, error) {
	if len(nonce) == 0 {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the event names no grant)")
	}
	var g *pb.AuditEvent
	if err := s.view(func(tx *Tx) (err error) { g, err = tx.GrantEvent(nonce); return err }); err != nil {
		return nil, err
	}
	switch {
	case g == nil:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(no grant %s was issued)", hex.EncodeToString(nonce))
	case peer.ID(g.GetPeer()) != id:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(grant %s was issued for %s)", hex.EncodeToString(nonce), peer.ID(g.GetPeer()))
	}
	return g, nil
}

// boundText cuts s to at most n bytes (on a rune boundary), marking the cut.
func boundText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(0, n-len(truncatedMark))
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

func boundExit(e *pb.ExitStatus) *pb.ExitStatus {
	if e == nil {
		return nil
	}
	return &pb.ExitStatus{Code: e.GetCode(), Signal: boundText(e.GetSignal(), maxEventToken), Error: boundText(e.GetError(), MaxEventField)}
}

// perTechnicianStarts is the site's max-session-starts-per-technician
// (0: half).
func perTechnicianStarts(st *pb.Settings) int { return int(st.GetMaxSessionStartsPerTechnician()) }
