package coordinator

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// "One jump at a time" across coordinators. With concurrent-jumps off, a
// jump to a peer that another technician is in session with is refused
// (session_in_use). The sessions a peer reports open reach only the
// coordinator that holds it, so on a site of several coordinators
// (etcd) each one also writes them to the store, under its lease:
//
//	js/<peer id>/<instance>/<session id> → the user in session
//
// written when the peer reports the session started, deleted when it
// reports it ended or goes offline here, and deleted by etcd with the
// lease when this coordinator dies. A jump asked of any coordinator reads
// the peer's sessions there. The delay is one store write after the
// peer's report: a second technician asking within it (milliseconds) gets
// a grant, as on one coordinator a jump asked between a grant and its
// session start does (a grant in flight holds no session). A peer that
// moves to another coordinator while in session keeps the old
// coordinator's entries until that one sees it gone.

const sessionsPrefix = "js/"

// Session starts in flight, site-wide. max-session-starts and each
// technician's share bound the grants issued and not yet used by all the
// site's coordinators together: each grant takes a record
//
//	ss/<grant nonce, hex> → startRecord (JSON: user, coordinator, expiry)
//
// under the lease of the coordinator that issued it, in a transaction that
// first counts the live records of ss/ (and deletes a few lapsed ones):
// two coordinators reserving at once conflict on the prefix and one runs
// again, so the bound holds exactly. The holder of the peer deletes the
// record when the peer reports the session started (in the transaction
// that records the session under js/), any coordinator when its grant was
// not issued or was refused; otherwise it stops counting after StartSlot,
// on the issuer's clock, or with the issuer's lease.
//
// Why records and not a share per live member (the connection rate's way,
// siterate.go): a technician's share is a few grants (half of 20 by
// default, often 1–3 when set), and a console asks whichever coordinator
// it reaches first; split over three members, a share of 2 would give a
// technician one grant on one coordinator and none on another, while the
// site's bound would still be passed as soon as members disagree on their
// number. A grant already costs a store write (its audit event) and
// technicians ask for grants at a human pace, so one more small
// transaction per grant is cheap where the exact count is worth it.
const startsPrefix = "ss/"

// startRecord is the value of ss/<nonce>.
type startRecord struct {
	User string `json:"user"`
	By   string `json:"by"`
	// Expires is when it stops counting (unix milliseconds on the clock of
	// the coordinator By).
	Expires int64 `json:"expires"`
}

// maxStartSweep bounds the lapsed records one reservation deletes.
const maxStartSweep = 16

func startKey(nonce []byte) []byte { return []byte(startsPrefix + hex.EncodeToString(nonce)) }

// reserve takes a slot for a session start for user across the site
// (jumps.reserve's rules, counted over ss/), in a transaction that first
// runs current (nil: none).
func (s *sharedSessions) reserve(nonce []byte, user string, now time.Time, st *pb.Settings, current func(tx *Tx) error) error {
	v, err := json.Marshal(startRecord{User: user, By: s.store.Instance(), Expires: now.Add(StartSlot).UnixMilli()})
	if err != nil {
		return err
	}
	site, share := int(st.GetMaxSessionStarts()), startShare(st)
	return s.store.Update(func(tx *Tx) error {
		if current != nil {
			if err := current(tx); err != nil {
				return err
			}
		}
		total, mine := 0, 0
		var lapsed [][]byte
		err := tx.kv.scan([]byte(startsPrefix), nil, false, func(k, v []byte) (bool, error) {
			var r startRecord
			if json.Unmarshal(v, &r) != nil || !now.Before(time.UnixMilli(r.Expires)) {
				if len(lapsed) < maxStartSweep {
					lapsed = append(lapsed, bytes.Clone(k))
				}
				return true, nil
			}
			total++
			if r.User == user {
				mine++
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		if total >= site {
			return catalog.Errorf(catalog.CodeServerBusy, "(%d session starts in flight on the site)", site)
		}
		if mine >= share {
			return catalog.Errorf(catalog.CodeServerBusy, "(you have %d session starts in flight, your share of the site's %d; unused grants stop counting after %s)",
				mine, site, StartSlot)
		}
		for _, k := range lapsed {
			if err := tx.kv.delete(k); err != nil {
				return err
			}
		}
		return tx.kv.setLeased(startKey(nonce), v)
	})
}

// release frees a grant's slot, whichever coordinator issued it.
func (s *sharedSessions) release(nonce []byte) {
	if err := s.store.Update(func(tx *Tx) error { return tx.kv.delete(startKey(nonce)) }); err != nil {
		s.log.Warn("freeing a session start's slot for the site", logError, err)
	}
}

// sharedSessions writes and reads js/ (nil on Badger: the sessions in
// memory are the site's).
type sharedSessions struct {
	store *Store
	log   *slog.Logger
}

func (s *sharedSessions) peerPrefix(id peer.ID) string { return sessionsPrefix + id.String() + "/" }

func (s *sharedSessions) ownPrefix(id peer.ID) string {
	return s.peerPrefix(id) + s.store.Instance() + "/"
}

// started records a session of id with user, and frees the slot its
// grant (nonce) took, on whichever coordinator issued it.
func (s *sharedSessions) started(id peer.ID, sessionID, user string, nonce []byte) {
	err := s.store.Update(func(tx *Tx) error {
		if err := tx.kv.delete(startKey(nonce)); err != nil {
			return err
		}
		return tx.kv.setLeased([]byte(s.ownPrefix(id)+sessionID), []byte(user))
	})
	if err != nil {
		s.log.Warn("recording a session for the site's other coordinators", logPeer, id, logError, err)
	}
}

// ended forgets a session of id.
func (s *sharedSessions) ended(id peer.ID, sessionID string) {
	err := s.store.Update(func(tx *Tx) error { return tx.kv.delete([]byte(s.ownPrefix(id) + sessionID)) })
	if err != nil {
		s.log.Warn("forgetting a session for the site's other coordinators", logPeer, id, logError, err)
	}
}

// peerGone forgets the sessions this coordinator recorded for id.
func (s *sharedSessions) peerGone(id peer.ID) {
	prefix := []byte(s.ownPrefix(id))
	err := s.store.Update(func(tx *Tx) error {
		var keys [][]byte
		err := tx.kv.scan(prefix, nil, false, func(k, _ []byte) (bool, error) {
			keys = append(keys, bytes.Clone(k))
			return len(keys) < 64, nil
		})
		for _, k := range keys {
			if err == nil {
				err = tx.kv.delete(k)
			}
		}
		return err
	})
	if err != nil {
		s.log.Warn("forgetting a peer's sessions for the site's other coordinators", logPeer, id, logError, err)
	}
}

// holders lists the users in session with id on any coordinator, other
// than user.
func (s *sharedSessions) holders(id peer.ID, user string) ([]string, error) {
	var out []string
	err := s.store.View(func(tx *Tx) error {
		return tx.kv.scan([]byte(s.peerPrefix(id)), nil, false, func(_, v []byte) (bool, error) {
			if u := string(v); u != user && !slices.Contains(out, u) {
				out = append(out, u)
			}
			return len(out) < 16, nil
		})
	})
	return out, err
}

// sessionHolders lists the users in session with the peer, other than
// user: those it reported here, and on a shared store those it reported
// to any coordinator. A store that cannot be read refuses the jump.
func (s *Service) sessionHolders(id peer.ID, user string) ([]string, error) {
	out := s.jumps.holders(id, user)
	if sh := s.jumps.shared; sh != nil {
		more, err := sh.holders(id, user)
		if err != nil {
			return nil, err
		}
		for _, u := range more {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
		sort.Strings(out)
	}
	return out, nil
}
