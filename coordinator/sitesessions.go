package coordinator

import (
	"bytes"
	"log/slog"
	"slices"
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"
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

// started records a session of id with user.
func (s *sharedSessions) started(id peer.ID, sessionID, user string) {
	err := s.store.Update(func(tx *Tx) error {
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
