package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Store is the coordinator's state: protobuf records in a transactional
// key-value backend, Badger in the data directory (the default) or etcd
// (store_etcd.go). Only the backends import their databases.
//
// Every write is durable before Update returns (Badger syncs; etcd commits
// to a quorum), so what the coordinator acknowledged survives a crash or
// kill -9. Records are protobuf messages from mesh/pb under these keys:
//
//	u/<name>        User
//	k/<peer id>     user name bound to a console key
//	i/<code hash>   Invite
//	g/<code>        Group
//	pj/<name>       JumpPolicy
//	ps/<name>       SessionPolicy
//	n/<id>          Installer
//	p/<peer id>     Peer
//	tp/<peer id>    tombstone of a removed peer (tombstones.go)
//	wk/<peer id>    last wake attempt (unix ms, big-endian; wake.go)
//	a/<time><seq>   audit event (audit.go); ag/<nonce> its grant index
//	settings        Settings
//
// and, on etcd, where several coordinators share the records, two kinds of
// JSON records held by a coordinator's lease (store_etcd_lease.go):
//
//	c/<instance>    a live coordinator: memberRecord (members.go)
//	o/<peer id>     an online peer and who holds it: presenceRecord (presence.go)
type Store struct {
	kv kvBackend
	// instance is this coordinator's name among the site's members.
	instance string
	// beforeCommit, when set (tests only), runs after an Update's function
	// and before its commit: a test makes a write conflict there.
	beforeCommit func()
	// watchHold, when set (tests only), runs before each watched change
	// is handed on: it holds this coordinator behind the store.
	watchHold atomic.Pointer[func()]
}

// StoreOptions tune the store. The zero value is the default.
type StoreOptions struct {
	// InMemory keeps everything in memory (tests and the in-process lab).
	InMemory bool
	Logger   *slog.Logger
}

// maxTxnRetries bounds retries of a transaction that lost a write conflict.
const maxTxnRetries = 8

// OpenStore opens (creating if needed) the Badger database in dir.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	kv, err := openBadger(dir, opts)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv}, nil
}

func (o StoreOptions) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Close flushes and closes the database.
func (s *Store) Close() error { return s.kv.close() }

// Instance is this coordinator's name among the site's members (the
// hostname unless --instance said otherwise).
func (s *Store) Instance() string { return s.instance }

// shared reports whether other coordinators may write the store: it is
// etcd and this store registered as a member there.
func (s *Store) shared() bool {
	e, ok := s.kv.(*etcdKV)
	return ok && e.member != nil
}

// watch calls fn with every change under prefix after revision after (a
// Tx's revision), in commit order, on a goroutine of the store's, until
// Close; fn must not block for long (the next changes wait). Own writes
// come back too: applying must be idempotent. On Badger (no other
// writer) fn is never called.
func (s *Store) watch(prefix string, after int64, fn func(watchBatch)) {
	s.kv.watch([]byte(prefix), after, func(b watchBatch) {
		if hold := s.watchHold.Load(); hold != nil {
			(*hold)()
		}
		fn(b)
	})
}

// catchUp waits until the watch of prefix has handed over every change
// the store had committed when it was called, at most catchUpWait
// (etcd; at once on Badger, whose registry is written after each
// commit). An error says the watch may still lag
// (store_etcd_catchup.go).
func (s *Store) catchUp(prefix string) error {
	e, ok := s.kv.(*etcdKV)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), catchUpWait)
	defer cancel()
	return e.catchUp(ctx, []byte(prefix))
}

// announce writes the addresses this coordinator serves into its member
// record (etcd; nothing on Badger).
func (s *Store) announce(addrs []string) error {
	if e, ok := s.kv.(*etcdKV); ok {
		return e.announce(addrs)
	}
	return nil
}

// onRegistered sets what runs after this coordinator registered again
// following a lost lease (etcd): what its lease held is gone and is put
// back there.
func (s *Store) onRegistered(fn func()) {
	if e, ok := s.kv.(*etcdKV); ok && e.member != nil {
		e.member.mu.Lock()
		e.member.onRegistered = fn
		e.member.mu.Unlock()
	}
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.kv.view(func(kv kvTxn) error { return fn(&Tx{kv: kv}) })
}

// Update runs fn in a read-write transaction and commits it durably. A
// transaction that conflicts with a concurrent one (in this coordinator or,
// on etcd, in another) is retried from scratch, so fn must not have effects
// outside tx.
func (s *Store) Update(fn func(tx *Tx) error) error {
	_, err := s.updateAt(fn)
	return err
}

// updateAt is Update, and returns the store revision the commit made (0
// on Badger, or when fn wrote nothing): what the registry compares watch
// events with.
func (s *Store) updateAt(fn func(tx *Tx) error) (int64, error) {
	for attempt := 0; ; attempt++ {
		var last kvTxn
		err := s.kv.update(func(kv kvTxn) error { last = kv; return fn(&Tx{kv: kv}) }, s.beforeCommit)
		if !errors.Is(err, ErrStoreConflict) || attempt >= maxTxnRetries {
			if err != nil || last == nil {
				return 0, err
			}
			return last.committed(), nil
		}
		// Writers that retry at once meet again: a random pause, growing
		// with each loss up to longer than an etcd transaction takes on a
		// loaded machine, lets one of them through (two tight loops on one
		// key lost 9 times in a row without it).
		time.Sleep(rand.N(min(time.Millisecond<<attempt, 64*time.Millisecond)))
	}
}

// Tx is one store transaction with typed accessors.
type Tx struct {
	kv kvTxn
}

func (tx *Tx) get(key string, m proto.Message) (bool, error) {
	v, ok, err := tx.kv.get([]byte(key))
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", key, err)
	}
	if !ok {
		return false, nil
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("decoding %s: %w", key, err)
	}
	return true, nil
}

func (tx *Tx) put(key string, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	if err := tx.kv.set([]byte(key), v); err != nil {
		return fmt.Errorf("writing %s: %w", key, err)
	}
	return nil
}

// revision is the store revision this transaction reads at: a watch from
// there misses nothing the transaction did not see (0 on Badger).
func (tx *Tx) revision() (int64, error) { return tx.kv.revision() }

func (tx *Tx) del(key string) error {
	if err := tx.kv.delete([]byte(key)); err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// list decodes every record under prefix, in key order.
func list[T any, PT interface {
	*T
	proto.Message
}](tx *Tx, prefix string) ([]PT, error) {
	var out []PT
	err := tx.kv.scan([]byte(prefix), nil, false, func(k, v []byte) (bool, error) {
		m := PT(new(T))
		if err := proto.Unmarshal(v, m); err != nil {
			return false, fmt.Errorf("decoding %s: %w", k, err)
		}
		out = append(out, m)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func getOrNil[T any, PT interface {
	*T
	proto.Message
}](tx *Tx, key string) (PT, error) {
	m := PT(new(T))
	ok, err := tx.get(key, m)
	if !ok || err != nil {
		return nil, err
	}
	return m, nil
}

// Users

func (tx *Tx) User(name string) (*pb.User, error) { return getOrNil[pb.User](tx, "u/"+name) }
func (tx *Tx) PutUser(u *pb.User) error           { return tx.put("u/"+u.GetName(), u) }
func (tx *Tx) Users() ([]*pb.User, error)         { return list[pb.User](tx, "u/") }
func (tx *Tx) DeleteUser(name string) error       { return tx.del("u/" + name) }
func (tx *Tx) BindKey(id peer.ID, user string) error {
	return tx.kv.set([]byte("k/"+string(id)), []byte(user))
}
func (tx *Tx) UnbindKey(id peer.ID) error { return tx.del("k/" + string(id)) }

// UserByKey returns the name bound to a console key, or "".
func (tx *Tx) UserByKey(id peer.ID) (string, error) {
	v, _, err := tx.kv.get([]byte("k/" + string(id)))
	if err != nil {
		return "", fmt.Errorf("reading key binding: %w", err)
	}
	return string(v), nil
}

// Invites

func (tx *Tx) Invite(hash []byte) (*pb.Invite, error) {
	return getOrNil[pb.Invite](tx, "i/"+string(hash))
}
func (tx *Tx) PutInvite(inv *pb.Invite) error {
	return tx.put("i/"+string(inv.GetCodeHash()), inv)
}
func (tx *Tx) DeleteInvite(hash []byte) error { return tx.del("i/" + string(hash)) }
func (tx *Tx) Invites() ([]*pb.Invite, error) { return list[pb.Invite](tx, "i/") }

// Groups

func (tx *Tx) Group(code string) (*pb.Group, error) { return getOrNil[pb.Group](tx, "g/"+code) }
func (tx *Tx) PutGroup(g *pb.Group) error           { return tx.put("g/"+g.GetCode(), g) }
func (tx *Tx) DeleteGroup(code string) error        { return tx.del("g/" + code) }
func (tx *Tx) Groups() ([]*pb.Group, error)         { return list[pb.Group](tx, "g/") }

// Policies

func (tx *Tx) JumpPolicy(name string) (*pb.JumpPolicy, error) {
	return getOrNil[pb.JumpPolicy](tx, "pj/"+name)
}
func (tx *Tx) PutJumpPolicy(p *pb.JumpPolicy) error    { return tx.put("pj/"+p.GetName(), p) }
func (tx *Tx) DeleteJumpPolicy(name string) error      { return tx.del("pj/" + name) }
func (tx *Tx) JumpPolicies() ([]*pb.JumpPolicy, error) { return list[pb.JumpPolicy](tx, "pj/") }
func (tx *Tx) SessionPolicy(name string) (*pb.SessionPolicy, error) {
	return getOrNil[pb.SessionPolicy](tx, "ps/"+name)
}
func (tx *Tx) PutSessionPolicy(p *pb.SessionPolicy) error { return tx.put("ps/"+p.GetName(), p) }
func (tx *Tx) DeleteSessionPolicy(name string) error      { return tx.del("ps/" + name) }
func (tx *Tx) SessionPolicies() ([]*pb.SessionPolicy, error) {
	return list[pb.SessionPolicy](tx, "ps/")
}

// Installers

func (tx *Tx) Installer(id string) (*pb.Installer, error) { return getOrNil[pb.Installer](tx, "n/"+id) }
func (tx *Tx) PutInstaller(in *pb.Installer) error        { return tx.put("n/"+in.GetId(), in) }
func (tx *Tx) Installers() ([]*pb.Installer, error)       { return list[pb.Installer](tx, "n/") }

// Settings returns the stored settings with defaults filled in.
func (tx *Tx) Settings() (*pb.Settings, error) {
	s, err := getOrNil[pb.Settings](tx, "settings")
	if err != nil {
		return nil, err
	}
	return SettingsWithDefaults(s), nil
}
func (tx *Tx) PutSettings(s *pb.Settings) error { return tx.put("settings", s) }

// Peers (enrolled hosts), under p/<peer id>.

func (tx *Tx) Peer(id peer.ID) (*pb.Peer, error) { return getOrNil[pb.Peer](tx, "p/"+string(id)) }
func (tx *Tx) PutPeer(p *pb.Peer) error          { return tx.put("p/"+string(p.GetId()), p) }
func (tx *Tx) DeletePeer(id peer.ID) error       { return tx.del("p/" + string(id)) }
func (tx *Tx) Peers() ([]*pb.Peer, error)        { return list[pb.Peer](tx, "p/") }

// Wake attempts (wake.go): wk/<peer ID> → the attempt's time, big-endian
// unix milliseconds, for the per-target cooldown across restarts.

// WakeAttempt is when a wake of id was last attempted; zero if never (or
// swept since).
func (tx *Tx) WakeAttempt(id peer.ID) (time.Time, error) {
	v, ok, err := tx.kv.get([]byte("wk/" + string(id)))
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the wake attempt of %s: %w", id, err)
	}
	if !ok {
		return time.Time{}, nil
	}
	if len(v) != 8 {
		return time.Time{}, fmt.Errorf("wake attempt of %s: %d bytes", id, len(v))
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(v))), nil
}

func (tx *Tx) PutWakeAttempt(id peer.ID, at time.Time) error {
	return tx.kv.set([]byte("wk/"+string(id)), binary.BigEndian.AppendUint64(nil, uint64(at.UnixMilli())))
}

func (tx *Tx) DeleteWakeAttempt(id peer.ID) error { return tx.del("wk/" + string(id)) }

// WakeAttempts lists every stored attempt (the sweep drops old ones).
func (tx *Tx) WakeAttempts() (map[peer.ID]time.Time, error) {
	out := map[peer.ID]time.Time{}
	err := tx.kv.scan([]byte("wk/"), nil, false, func(k, v []byte) (bool, error) {
		if len(v) == 8 {
			out[peer.ID(bytes.TrimPrefix(k, []byte("wk/")))] = time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
