package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The store's contract, run against both backends: Badger in a temporary
// directory and a real etcd member started by the test.

// storeBackend opens stores on one place of one backend.
type storeBackend struct {
	name string
	// open opens a new Store on the same data (after the last one was
	// closed, for Badger; alongside it, for etcd).
	open func(t *testing.T) *Store
	// shared reports whether two Stores may be open at once (etcd).
	shared bool
}

func storeBackends(t *testing.T) []storeBackend {
	dir := filepath.Join(t.TempDir(), "db")
	badgerBackend := storeBackend{name: "badger", open: func(t *testing.T) *Store {
		st, err := OpenStore(dir, StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}}
	if testing.Short() {
		return []storeBackend{badgerBackend}
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	prefix := "/jumpmesh/" + t.Name() + "/"
	etcdBackend := storeBackend{name: "etcd", shared: true, open: func(t *testing.T) *Store {
		return openTestEtcd(t, srv, prefix)
	}}
	return []storeBackend{badgerBackend, etcdBackend}
}

func openTestEtcd(t testing.TB, srv *etcdtest.Server, prefix string) *Store {
	t.Helper()
	st, err := OpenEtcdStore(testEtcdConfig(srv, prefix))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func testEtcdConfig(srv *etcdtest.Server, prefix string) EtcdConfig {
	return EtcdConfig{Endpoints: []string{srv.Endpoint}, Prefix: prefix, DialTimeout: 5 * time.Second, RequestTimeout: 3 * time.Second}
}

func eachStoreBackend(t *testing.T, fn func(t *testing.T, b storeBackend)) {
	for _, b := range storeBackends(t) {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

func mustUpdate(t testing.TB, st *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := st.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func userNames(t testing.TB, st *Store) []string {
	t.Helper()
	var names []string
	err := st.View(func(tx *Tx) error {
		us, err := tx.Users()
		for _, u := range us {
			names = append(names, u.GetName())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestStoreContractPutGetDelete(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		id := peer.ID("\x00\x24peer-one")
		mustUpdate(t, st, func(tx *Tx) error {
			if err := tx.PutUser(&pb.User{Name: "ada", Role: pb.Role_ROLE_ADMIN}); err != nil {
				return err
			}
			// A transaction sees its own writes, in gets and in lists.
			if u, err := tx.User("ada"); err != nil || u == nil {
				return fmt.Errorf("own write not seen: %v %v", u, err)
			}
			if us, err := tx.Users(); err != nil || len(us) != 1 {
				return fmt.Errorf("own write not listed: %v %v", us, err)
			}
			return tx.BindKey(id, "ada")
		})
		err := st.View(func(tx *Tx) error {
			u, err := tx.User("ada")
			if err != nil || u.GetRole() != pb.Role_ROLE_ADMIN {
				return fmt.Errorf("user ada: %v %v", u, err)
			}
			if name, err := tx.UserByKey(id); err != nil || name != "ada" {
				return fmt.Errorf("key binding: %q %v", name, err)
			}
			if u, err := tx.User("bob"); err != nil || u != nil {
				return fmt.Errorf("absent user: %v %v", u, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, st, func(tx *Tx) error {
			if err := tx.DeleteUser("ada"); err != nil {
				return err
			}
			if us, err := tx.Users(); err != nil || len(us) != 0 {
				return fmt.Errorf("own delete still listed: %v %v", us, err)
			}
			return tx.UnbindKey(id)
		})
		if names := userNames(t, st); len(names) != 0 {
			t.Fatalf("after delete: %v", names)
		}
		// A write in a View is refused (Badger: ErrReadOnlyTxn).
		if err := st.View(func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "x"}) }); err == nil {
			t.Fatal("a write in a View succeeded")
		}
	})
}

func TestStoreContractListsPrefixesInOrder(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		const n = 600 // more than one etcd scan page
		for from := 0; from < n; from += 100 {
			mustUpdate(t, st, func(tx *Tx) error {
				for i := from; i < from+100; i++ {
					if err := tx.PutUser(&pb.User{Name: fmt.Sprintf("user-%04d", i)}); err != nil {
						return err
					}
				}
				return nil
			})
		}
		// Neighbours whose keys share a first letter: p/ and pj/, ps/.
		mustUpdate(t, st, func(tx *Tx) error {
			if err := tx.PutPeer(&pb.Peer{Id: []byte("\x00\x24p")}); err != nil {
				return err
			}
			if err := tx.PutJumpPolicy(&pb.JumpPolicy{Name: "pj"}); err != nil {
				return err
			}
			return tx.PutSettings(&pb.Settings{})
		})
		names := userNames(t, st)
		if len(names) != n {
			t.Fatalf("%d users listed, want %d", len(names), n)
		}
		for i, name := range names {
			if want := fmt.Sprintf("user-%04d", i); name != want {
				t.Fatalf("user %d is %q, want %q (order)", i, name, want)
			}
		}
		err := st.View(func(tx *Tx) error {
			ps, err := tx.Peers()
			if err != nil || len(ps) != 1 {
				return fmt.Errorf("peers: %d %v", len(ps), err)
			}
			jp, err := tx.JumpPolicies()
			if err != nil || len(jp) != 1 {
				return fmt.Errorf("jump policies: %d %v", len(jp), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestStoreContractAuditReversePaging reads the audit log newest first in
// pages, as `jumpmesh audit` does, across more events than a scan page.
func TestStoreContractAuditReversePaging(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		base := time.Unix(1_800_000_000, 0)
		const n = 700
		for from := 0; from < n; from += 50 {
			mustUpdate(t, st, func(tx *Tx) error {
				for i := from; i < from+50; i++ {
					// Two events share each timestamp: the sequence orders them.
					e := &pb.AuditEvent{Kind: AuditGrant, Detail: fmt.Sprint(i), TimeUnixNano: base.Add(time.Duration(i/2) * time.Second).UnixNano(),
						SessionId: fmt.Sprintf("%02x", i)}
					if err := tx.PutAudit(e); err != nil {
						return err
					}
				}
				return nil
			})
		}
		var got []string
		var cursor []byte
		for pages := 0; ; pages++ {
			var events []*pb.AuditEvent
			err := st.View(func(tx *Tx) (err error) {
				events, cursor, err = tx.AuditPage(base.Add(10*time.Second), cursor, func(*pb.AuditEvent) bool { return true }, 64)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := len(events) - 1; i >= 0; i-- {
				got = append(got, events[i].GetDetail())
			}
			if cursor == nil {
				break
			}
			if pages > n {
				t.Fatal("paging does not end")
			}
		}
		// Events at or after base+10s: i from 20 to n-1, newest first.
		if len(got) != n-20 {
			t.Fatalf("%d events read, want %d", len(got), n-20)
		}
		for j, d := range got {
			if want := fmt.Sprint(n - 1 - j); d != want {
				t.Fatalf("event %d is %s, want %s", j, d, want)
			}
		}
		// A grant's index finds its event; an unknown nonce finds none.
		err := st.View(func(tx *Tx) error {
			e, err := tx.GrantEvent([]byte{0x07})
			if err != nil || e.GetDetail() != "7" {
				return fmt.Errorf("grant event 07: %v %v", e, err)
			}
			e, err = tx.GrantEvent([]byte{0xff, 0xff})
			if err != nil || e != nil {
				return fmt.Errorf("unknown grant: %v %v", e, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestStoreContractConcurrentUpdatesLoseNothing: Updates racing on one
// record (from two coordinators, on etcd) never lose an acknowledged write:
// the record counts exactly the Updates that returned nil, and one that
// lost every retry says so (ErrStoreConflict). Writers in tight loops on
// one key are the worst case; nearly all of them land.
func TestStoreContractConcurrentUpdatesLoseNothing(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		others := []*Store{st}
		if b.shared {
			// The second writer is a second coordinator's store.
			st2 := b.open(t)
			defer st2.Close()
			others = append(others, st2)
		}
		id := peer.ID("\x00\x24counter")
		mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(&pb.Peer{Id: []byte(id)}) })
		const writers, each = 2, 25
		var wg sync.WaitGroup
		var runs, acked, gaveUp atomic.Int64
		for w := range writers {
			s := others[w%len(others)]
			wg.Go(func() {
				for range each {
					err := s.Update(func(tx *Tx) error {
						runs.Add(1)
						p, err := tx.Peer(id)
						if err != nil {
							return err
						}
						p.LastAccessUnix++
						return tx.PutPeer(p)
					})
					switch {
					case err == nil:
						acked.Add(1)
					case errors.Is(err, ErrStoreConflict):
						gaveUp.Add(1)
					default:
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		var got int64
		st.View(func(tx *Tx) error { p, err := tx.Peer(id); got = p.GetLastAccessUnix(); return err })
		if got != acked.Load() {
			t.Fatalf("counter %d after %d acknowledged increments: lost updates", got, acked.Load())
		}
		if gaveUp.Load() > writers*each/10 {
			t.Errorf("%d of %d increments lost every retry", gaveUp.Load(), writers*each)
		}
		t.Logf("%d increments acknowledged, %d gave up, %d runs of the function", acked.Load(), gaveUp.Load(), runs.Load())
	})
}

// TestStoreContractConflictRetries makes one deterministic conflict: a
// write by another transaction between an Update's read and its commit.
func TestStoreContractConflictRetries(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		other := st
		if b.shared {
			other = b.open(t)
			defer other.Close()
		}
		mustUpdate(t, st, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "ada", CreatedBy: "a"}) })
		disturb := 1
		st.beforeCommit = func() {
			if disturb == 0 {
				return
			}
			disturb--
			err := other.kv.update(func(kv kvTxn) error {
				tx := &Tx{kv: kv}
				u, err := tx.User("ada")
				if err != nil {
					return err
				}
				u.CreatedBy += "+other"
				return tx.PutUser(u)
			}, nil)
			if err != nil {
				t.Error(err)
			}
		}
		runs := 0
		mustUpdate(t, st, func(tx *Tx) error {
			runs++
			u, err := tx.User("ada")
			if err != nil {
				return err
			}
			u.CreatedBy += "+mine"
			return tx.PutUser(u)
		})
		if runs != 2 {
			t.Errorf("the function ran %d times, want 2 (one conflict)", runs)
		}
		err := st.View(func(tx *Tx) error {
			u, err := tx.User("ada")
			if u.GetCreatedBy() != "a+other+mine" {
				return fmt.Errorf("created_by %q, want a+other+mine", u.GetCreatedBy())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A listed record deleted by another transaction is not written back.
		disturb = 1
		st.beforeCommit = func() {
			if disturb == 0 {
				return
			}
			disturb--
			if err := other.kv.update(func(kv kvTxn) error { return (&Tx{kv: kv}).DeleteUser("ada") }, nil); err != nil {
				t.Error(err)
			}
		}
		mustUpdate(t, st, func(tx *Tx) error {
			us, err := tx.Users()
			for _, u := range us {
				u.CreatedBy = "rewritten"
				if err := tx.PutUser(u); err != nil {
					return err
				}
			}
			return err
		})
		if names := userNames(t, st); len(names) != 0 {
			t.Fatalf("a deleted record was written back: %v", names)
		}
	})
}

func TestStoreContractWritesSurviveReopen(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		mustUpdate(t, st, func(tx *Tx) error {
			if err := tx.PutWakeAttempt("\x00\x24w", time.UnixMilli(1234)); err != nil {
				return err
			}
			return tx.PutUser(&pb.User{Name: "kept"})
		})
		if b.shared {
			// A second coordinator sees the first one's commits.
			st2 := b.open(t)
			if names := userNames(t, st2); len(names) != 1 || names[0] != "kept" {
				t.Errorf("a second store sees %v", names)
			}
			st2.Close()
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st = b.open(t)
		defer st.Close()
		if names := userNames(t, st); len(names) != 1 || names[0] != "kept" {
			t.Fatalf("after reopening: %v", names)
		}
		err := st.View(func(tx *Tx) error {
			at, err := tx.WakeAttempt("\x00\x24w")
			if at.UnixMilli() != 1234 {
				return fmt.Errorf("wake attempt %v", at)
			}
			all, _ := tx.WakeAttempts()
			if len(all) != 1 {
				return fmt.Errorf("wake attempts %v", all)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestStoreContractAuditKeysNeverCollide: events of one nanosecond written
// at once (by two coordinators, on etcd) all stay.
func TestStoreContractAuditKeysNeverCollide(t *testing.T) {
	eachStoreBackend(t, func(t *testing.T, b storeBackend) {
		st := b.open(t)
		defer st.Close()
		stores := []*Store{st}
		if b.shared {
			st2 := b.open(t)
			defer st2.Close()
			stores = append(stores, st2)
		}
		at := time.Unix(1_800_000_000, 0).UnixNano()
		seq := auditSeq.Load()
		var wg sync.WaitGroup
		for w := range 4 {
			s := stores[w%len(stores)]
			wg.Go(func() {
				for i := range 5 {
					if err := s.Update(func(tx *Tx) error {
						return tx.PutAudit(&pb.AuditEvent{Kind: AuditEnd, TimeUnixNano: at, Detail: fmt.Sprint(w, i)})
					}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		// The next event takes the last key used (a clock set back, or
		// another coordinator's counter).
		auditSeq.Store(seq + 19)
		mustUpdate(t, st, func(tx *Tx) error {
			return tx.PutAudit(&pb.AuditEvent{Kind: AuditEnd, TimeUnixNano: at, Detail: "reused sequence"})
		})
		var events []*pb.AuditEvent
		st.View(func(tx *Tx) (err error) {
			events, _, err = tx.AuditPage(time.Unix(0, at), nil, func(*pb.AuditEvent) bool { return true }, 0)
			return err
		})
		if len(events) != 21 {
			t.Fatalf("%d events stored, want 21", len(events))
		}
	})
}

// etcd only: what another site, a lost etcd and etcd's bounds can do.

func TestEtcdStoreSitesCannotReadEachOther(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	victim := openTestEtcd(t, srv, "/jumpmesh/AB/")
	defer victim.Close()
	mustUpdate(t, victim, func(tx *Tx) error {
		if err := tx.PutAudit(&pb.AuditEvent{Kind: AuditGrant, TimeUnixNano: 1, SessionId: "00"}); err != nil {
			return err
		}
		return tx.PutUser(&pb.User{Name: "secret"})
	})
	// A site whose prefix is a prefix of the victim's, with or without
	// its trailing slash.
	for _, prefix := range []string{"/jumpmesh/A", "/jumpmesh/A/"} {
		st := openTestEtcd(t, srv, prefix)
		err := st.View(func(tx *Tx) error {
			if us, err := tx.Users(); err != nil || len(us) != 0 {
				return fmt.Errorf("users of another site listed: %v %v", us, err)
			}
			for _, key := range []string{"B/u/secret", "../AB/u/secret", "/../AB/u/secret"} {
				if v, ok, err := tx.kv.get([]byte(key)); err != nil || ok {
					return fmt.Errorf("key %q read %q", key, v)
				}
			}
			// Audit cursors come from consoles: none leaves the prefix.
			for _, cursor := range [][]byte{[]byte("a/\xff\xff"), []byte("../AB/a/\xff"), []byte("B/a/\xff")} {
				events, _, err := tx.AuditPage(time.Unix(0, 0), cursor, func(*pb.AuditEvent) bool { return true }, 0)
				if err != nil || len(events) != 0 {
					return fmt.Errorf("cursor %q read %d events of another site", cursor, len(events))
				}
			}
			if e, err := tx.GrantEvent([]byte{0}); err != nil || e != nil {
				return fmt.Errorf("grant of another site: %v", e)
			}
			return nil
		})
		st.Close()
		if err != nil {
			t.Fatalf("prefix %q: %v", prefix, err)
		}
	}
}

// TestEtcdStoreGoneMidUpdate: etcd stops between an Update's reads and
// its commit; the Update fails and none of its writes is there after.
func TestEtcdStoreGoneMidUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/gone/")
	cfg.RequestTimeout = 1500 * time.Millisecond
	st, err := OpenEtcdStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mustUpdate(t, st, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "before"}) })
	st.beforeCommit = srv.Stop
	err = st.Update(func(tx *Tx) error {
		if _, err := tx.Users(); err != nil {
			return err
		}
		for _, n := range []string{"one", "two", "three"} {
			if err := tx.PutUser(&pb.User{Name: n}); err != nil {
				return err
			}
		}
		return tx.DeleteUser("before")
	})
	wantCode(t, err, catalog.CodeStoreUnreachable)
	st.beforeCommit = nil
	srv.Restart()
	st2 := openTestEtcd(t, srv, "/jumpmesh/gone/")
	defer st2.Close()
	if names := userNames(t, st2); len(names) != 1 || names[0] != "before" {
		t.Fatalf("after a failed multi-key Update: %v (want only the earlier record)", names)
	}
}

func TestEtcdStoreRefusesTransactionsPastBounds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	st := openTestEtcd(t, srv, "/jumpmesh/big/")
	defer st.Close()
	err := st.Update(func(tx *Tx) error {
		for i := range 200 {
			if err := tx.PutUser(&pb.User{Name: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("exceeds etcd's bounds")) {
		t.Fatalf("200 writes in one transaction: %v", err)
	}
	if names := userNames(t, st); len(names) != 0 {
		t.Fatalf("%d records of a refused transaction written", len(names))
	}
	// Reads past the compare bound are merged, not refused.
	for from := 0; from < 300; from += 100 {
		mustUpdate(t, st, func(tx *Tx) error {
			for i := from; i < from+100; i++ {
				if err := tx.PutUser(&pb.User{Name: fmt.Sprint(i)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	mustUpdate(t, st, func(tx *Tx) error {
		for i := range 300 {
			if _, err := tx.User(fmt.Sprint(i)); err != nil {
				return err
			}
		}
		return tx.PutUser(&pb.User{Name: "after-300-reads"})
	})
}

func wantCode(t testing.TB, err error, code catalog.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := catalog.CodeOf(err); got != code {
		t.Fatalf("error %q has code %s, want %s", err, got, code)
	}
}
