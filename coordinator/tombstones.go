package coordinator

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Tombstones: a peer removed with rm leaves a small record under
// tp/<peer ID> (its ID, installer, when and by whom) once its peer record
// is gone, so that every later hello from it is told to uninstall again
// instead of enrolling anew with the installer key it still holds.
//
// A tombstone stays until the peer's key is of no use and an honest peer
// has uninstalled itself: past the end of its installer's validity (no
// enrollment with that key succeeds after it) and past the site's delete
// horizon counted from the removal (a peer that never heard the order
// uninstalls itself after that long offline). A goodbye does not end it:
// a peer told to uninstall is not welcomed, so it cannot say one, and a
// patched peer's word is no proof it is gone.

func (tx *Tx) Tombstone(id peer.ID) (*pb.Peer, error) { return getOrNil[pb.Peer](tx, "tp/"+string(id)) }
func (tx *Tx) PutTombstone(t *pb.Peer) error          { return tx.put("tp/"+string(t.GetId()), t) }
func (tx *Tx) DeleteTombstone(id peer.ID) error       { return tx.del("tp/" + string(id)) }
func (tx *Tx) Tombstones() ([]*pb.Peer, error)        { return list[pb.Peer](tx, "tp/") }

// bury deletes a removed peer's record and leaves its tombstone, in one
// transaction. rec is the record (or tombstone) the removal is about.
func (ps *peerStore) bury(rec *pb.Peer, by string, now time.Time) {
	id := peer.ID(rec.GetId())
	if id == "" {
		return
	}
	t := &pb.Peer{Id: rec.GetId(), InstallerId: rec.GetInstallerId(), DeletedUnix: rec.GetDeletedUnix(), DeletedBy: rec.GetDeletedBy()}
	if t.DeletedUnix == 0 {
		t.DeletedUnix, t.DeletedBy = now.Unix(), by
	}
	if err := ps.remove(id, t); err != nil {
		ps.log.Warn("deleting peer", logPeer, id, logError, err)
	}
}

// tombstone is the tombstone of a removed peer, nil if it has none.
func (ps *peerStore) tombstone(id peer.ID) *pb.Peer {
	var t *pb.Peer
	if err := ps.store.View(func(tx *Tx) (err error) { t, err = tx.Tombstone(id); return err }); err != nil {
		ps.log.Warn("reading tombstone", logPeer, id, logError, err)
	}
	return t
}

// tombstoneEnd is when t may go (see above).
func tombstoneEnd(tx *Tx, t *pb.Peer, st *pb.Settings) (time.Time, error) {
	end := time.Unix(t.GetDeletedUnix(), 0).Add(days(st.GetDeleteAfterDays()))
	in, err := tx.Installer(t.GetInstallerId())
	if err != nil {
		return time.Time{}, err
	}
	if in != nil {
		if keyEnd := time.Unix(in.GetBody().GetNotAfterUnix(), 0); keyEnd.After(end) {
			end = keyEnd
		}
	}
	return end, nil
}

// sweepTombstones forgets the tombstones whose peers can no longer come back.
func (s *Service) sweepTombstones(now time.Time) int {
	st := s.settings()
	var gone []peer.ID
	err := s.view(func(tx *Tx) error {
		all, err := tx.Tombstones()
		if err != nil {
			return err
		}
		for _, t := range all {
			end, err := tombstoneEnd(tx, t, st)
			if err != nil {
				return err
			}
			if !now.Before(end) {
				gone = append(gone, peer.ID(t.GetId()))
			}
		}
		return nil
	})
	if err == nil && len(gone) > 0 {
		err = s.update(func(tx *Tx) error {
			for _, id := range gone {
				if err := tx.DeleteTombstone(id); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		s.log.Warn("sweeping tombstones", logError, err)
		return 0
	}
	return len(gone)
}
