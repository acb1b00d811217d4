package coordinator

import (
	"bytes"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// peerStore owns the peer records: their Badger keys (p/, tp/) and the
// in-memory registry that searches and sessions read. It is the only
// writer of either, so the two cannot drift:
//
//   - a change runs as one store transaction whose function has no effect
//     outside it (Store.Update may run it again after a write conflict);
//   - the registry takes the committed record only after Update returned
//     nil, never from an attempt that may be retried or fail;
//   - writes of one peer are serialised (a lock per peer, striped), so
//     two committed changes reach the registry in their commit order.
//
// Reads, sessions and in-memory contact (attach, detach, touch, get,
// snapshot, search ...) are the registry's, promoted through the embedding;
// put and remove shadow the registry's own so no caller can write the
// cache without the store.
type peerStore struct {
	*registry
	store *Store
	log   *slog.Logger
	seed  maphash.Seed
	locks [64]sync.Mutex
	// presence writes o/ for the peers this coordinator holds (on a
	// shared store; presence.go). nil: none written.
	presence *presenceWriter
}

// newPeerStore loads the records and, on a shared store, follows what the
// site's other coordinators write to p/ and o/ from the revision it read
// (presence.go).
func newPeerStore(st *Store, log *slog.Logger) (*peerStore, error) {
	ps := &peerStore{registry: newRegistry(), store: st, log: log, seed: maphash.MakeSeed()}
	rev, presence, err := ps.registry.load(st)
	if err != nil {
		return nil, err
	}
	if st.shared() {
		ps.applyPresence(watchBatch{events: presence, reset: true, rev: rev})
		st.watch(peersPrefix, rev, ps.applyPeers)
		st.watch(presencePrefix, rev, ps.applyPresence)
	}
	return ps, nil
}

// lock takes the write lock of id's stripe and returns its unlock.
func (ps *peerStore) lock(id peer.ID) func() {
	m := &ps.locks[maphash.String(ps.seed, string(id))%uint64(len(ps.locks))]
	m.Lock()
	return m.Unlock
}

// put writes rec (a new peer) and then caches it.
func (ps *peerStore) put(rec *pb.Peer) error {
	_, _, err := ps.write(peer.ID(rec.GetId()), func(*Tx) (*pb.Peer, error) { return rec, nil }, nil)
	return err
}

// modify applies fn to the stored record of id, commits it and then caches
// the result. fn changes only rec: it may run more than once. A peer
// without a record gives CodePeerNotFound.
func (ps *peerStore) modify(id peer.ID, fn func(rec *pb.Peer) error) (*pb.Peer, error) {
	out, _, err := ps.write(id, stored(id, fn), nil)
	return out, err
}

// stored is a write's record: id's stored one, changed by fn.
func stored(id peer.ID, fn func(rec *pb.Peer) error) func(tx *Tx) (*pb.Peer, error) {
	return func(tx *Tx) (*pb.Peer, error) {
		rec, err := tx.Peer(id)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, catalog.Errorf(catalog.CodePeerNotFound, "(%s)", id)
		}
		if err := fn(rec); err != nil {
			return nil, err
		}
		return rec, nil
	}
}

// write commits the record next returns (it may run more than once, and
// changes nothing outside its result) and then caches it, under id's lock.
// With a session (a hello's write, registerPeer), and unless the record
// is marked deleted, it also attaches sess as the peer's session, under
// the same lock once the registry holds the record, and returns the
// session it replaced; on a shared store the peer's presence goes into
// the same transaction: one commit for both (presence.go).
func (ps *peerStore) write(id peer.ID, next func(tx *Tx) (*pb.Peer, error), sess *peerSession) (*pb.Peer, *peerSession, error) {
	defer ps.lock(id)()
	var out *pb.Peer
	rev, err := ps.store.updateAt(func(tx *Tx) error {
		rec, err := next(tx)
		if out = rec; err != nil {
			return err
		}
		if err := tx.PutPeer(rec); err != nil {
			return err
		}
		if sess != nil && rec.GetDeletedUnix() == 0 {
			return ps.presenceIn(tx, id)
		}
		return nil
	})
	if err := storeErr(err); err != nil {
		return nil, nil, err
	}
	if sess == nil || out.GetDeletedUnix() != 0 {
		ps.registry.putAt(out, rev)
		return out, nil, nil
	}
	old := ps.registry.putAttach(out, rev, sess)
	ps.attached(id, sess, false)
	return out, old, nil
}

// modifyBatch is how many records modifyMany writes in one transaction:
// well inside Badger's transaction size and etcd's 128 operations.
const modifyBatch = 64

// modifyMany applies fn to the stored records of ids, modifyBatch to a
// transaction, and caches the results; ids without a record are skipped.
// It returns how many it changed. Used where one write per peer would be
// thousands of synced commits (the last-seen times at shutdown).
func (ps *peerStore) modifyMany(ids []peer.ID, fn func(rec *pb.Peer)) (int, error) {
	changed := 0
	for len(ids) > 0 {
		batch := ids[:min(modifyBatch, len(ids))]
		ids = ids[len(batch):]
		// The batch's stripes, each once, in index order: no deadlock with
		// modify, which takes one.
		var stripes []int
		for _, id := range batch {
			stripes = append(stripes, int(maphash.String(ps.seed, string(id))%uint64(len(ps.locks))))
		}
		slices.Sort(stripes)
		stripes = slices.Compact(stripes)
		for _, i := range stripes {
			ps.locks[i].Lock()
		}
		var out []*pb.Peer
		rev, err := ps.store.updateAt(func(tx *Tx) error {
			out = out[:0]
			for _, id := range batch {
				rec, err := tx.Peer(id)
				if err != nil {
					return err
				}
				if rec == nil {
					continue
				}
				fn(rec)
				if err := tx.PutPeer(rec); err != nil {
					return err
				}
				out = append(out, rec)
			}
			return nil
		})
		err = storeErr(err)
		if err == nil {
			for _, rec := range out {
				ps.registry.putAt(rec, rev)
			}
			changed += len(out)
		}
		for _, i := range stripes {
			ps.locks[i].Unlock()
		}
		if err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// remove deletes id's record, leaving tombstone (when not nil) in the same
// transaction, and then drops it from the cache.
func (ps *peerStore) remove(id peer.ID, tombstone *pb.Peer) error {
	defer ps.lock(id)()
	rev, err := ps.store.updateAt(func(tx *Tx) error {
		if err := tx.DeletePeer(id); err != nil {
			return err
		}
		if tombstone == nil {
			return nil
		}
		return tx.PutTombstone(tombstone)
	})
	if err := storeErr(err); err != nil {
		return err
	}
	ps.registry.removeAt(id, rev)
	return nil
}

// forget deletes id's record without a tombstone (the peer may enroll
// again), logging a failure.
func (ps *peerStore) forget(id peer.ID) {
	if err := ps.remove(id, nil); err != nil {
		ps.log.Warn("deleting peer", logPeer, id, logError, err)
	}
}

// errPeerChanged: a grant's peer record changed through another
// coordinator after this one read it (current).
var errPeerChanged = catalog.Errorf(catalog.CodeServerBusy,
	"(the peer's record changed through another coordinator while the grant was issued; ask again)")

// current is the check a grant's reservation runs in its transaction on
// a shared store: the peer's record in the store must still be rec, as
// far as a grant depends on it (grantFacts). The registry follows the
// store by watch, a few milliseconds behind: a peer removed, disabled or
// moved to another group through another coordinator could otherwise get
// a grant here within them. The store's record is read at the
// transaction's revision and compared at its commit (a change in between
// makes the transaction run again), so a grant is issued only on the
// record as it is when the grant is counted. When it differs, the record
// read is filed in the registry as the watch would file it, and the
// jump's checks run again on it (Service.jump, once). Filing it from
// inside a transaction that may run again is no exception to the rule
// above: it is a record the store committed, filed at the revision it was
// read at, as the watch files it, not this transaction's write.
func (ps *peerStore) current(rec *pb.Peer) func(tx *Tx) error {
	id := peer.ID(rec.GetId())
	key := []byte(peersPrefix + string(id))
	return func(tx *Tx) error {
		v, ok, err := tx.kv.get(key)
		if err != nil {
			return err
		}
		var stored *pb.Peer
		if ok {
			stored = &pb.Peer{}
			if err := proto.Unmarshal(v, stored); err != nil || peer.ID(stored.GetId()) != id {
				return catalog.Errorf(catalog.CodePeerNotFound, "(the store's record of %s does not decode)", id)
			}
			if sameGrantFacts(stored, rec) {
				return nil
			}
		}
		rev, err := tx.revision()
		if err != nil {
			return err
		}
		// Batch revision 0: filing this one record must not end the
		// watch's memory of deletes it has not passed (applyPeers).
		var value []byte
		if ok {
			value = v
		}
		ps.applyPeers(watchBatch{events: []storeEvent{{key: string(key), value: value, rev: rev}}})
		return errPeerChanged
	}
}

// sameGrantFacts reports whether a and b agree on what a grant is built
// from: the settings (name, group, policies, connection type), whether
// the peer is disabled, uninstalled, deleted or passive, its jumpoints.
// Contact, statistics and host facts change at every report and are
// not compared.
func sameGrantFacts(a, b *pb.Peer) bool {
	return proto.Equal(a.GetSettings(), b.GetSettings()) && a.GetDisabled() == b.GetDisabled() &&
		a.GetUninstalledUnix() == b.GetUninstalledUnix() && a.GetDeletedUnix() == b.GetDeletedUnix() &&
		a.GetPassiveUnix() == b.GetPassiveUnix() && slices.EqualFunc(a.GetJumpoints(), b.GetJumpoints(), bytes.Equal)
}
