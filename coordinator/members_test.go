package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func openMember(t *testing.T, cfg EtcdConfig, instance, holder string) (*Store, error) {
	t.Helper()
	cfg.Instance, cfg.Holder = instance, holder
	st, err := OpenEtcdStore(cfg)
	if err == nil {
		t.Cleanup(func() { st.Close() })
	}
	return st, err
}

// TestEtcdMembersShareAPrefix: coordinators of different instance names
// register side by side and all write; a second process of a live
// instance is refused naming the first; coordinator migrate's exclusive
// lock and members keep each other out.
func TestEtcdMembersShareAPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/members/")
	a, err := openMember(t, cfg, "a", "first process")
	if err != nil {
		t.Fatal(err)
	}
	b, err := openMember(t, cfg, "b", "")
	if err != nil {
		t.Fatalf("a second instance on the prefix: %v", err)
	}
	mustUpdate(t, a, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "from-a"}) })
	mustUpdate(t, b, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "from-b"}) })
	if names := userNames(t, a); len(names) != 2 {
		t.Fatalf("a reads %v", names)
	}

	_, err = openMember(t, cfg, "a", "second process")
	wantCode(t, err, catalog.CodeStoreInUse)
	if ce := err.(*catalog.Error); !contains(ce.Detail, "instance a (first process)") {
		t.Errorf("the refusal does not name the live instance: %v", err)
	}
	// Another prefix is another site.
	other := cfg
	other.Prefix = "/jumpmesh/members-too/"
	if _, err := openMember(t, other, "a", ""); err != nil {
		t.Fatal(err)
	}
	// migrate's lock waits for no member.
	lock := cfg
	lock.Lock, lock.Holder = true, "coordinator migrate"
	_, err = OpenEtcdStore(lock)
	wantCode(t, err, catalog.CodeStoreInUse)
	locked := other
	locked.Prefix = "/jumpmesh/members-locked/"
	locked.Lock, locked.Holder = true, "coordinator migrate"
	m, err := OpenEtcdStore(locked)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openMember(t, locked, "c", "")
	wantCode(t, err, catalog.CodeStoreInUse)
	if ce := err.(*catalog.Error); !contains(ce.Detail, "coordinator migrate") {
		t.Errorf("the refusal does not name the lock's holder: %v", err)
	}
	m.Close()
	if _, err := openMember(t, locked, "c", ""); err != nil {
		t.Fatalf("after migrate: %v", err)
	}

	// The member record says who serves, in JSON an operator can read.
	cli := rawEtcd(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.announce([]string{"/ip4/127.0.0.1/tcp/4001"}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, cfg.Prefix+"c/a")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("c/a: %v %v", resp, err)
	}
	var rec memberRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil || rec.Instance != "a" || rec.Process != "first process" ||
		len(rec.Addrs) != 1 || rec.Started == 0 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("c/a holds %s (lease %x): %v", resp.Kvs[0].Value, resp.Kvs[0].Lease, err)
	}
	// Closing gives the key back at once.
	b.Close()
	if resp, err := cli.Get(ctx, cfg.Prefix+"c/b"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("c/b after close: %v %v", resp.Kvs, err)
	}
}

// TestEtcdMemberFencedOnItsKey: a coordinator whose member key is gone
// (its lease ran out or was revoked while another process of its instance
// registered) writes nothing more; once the key is free it registers
// again and writes again.
func TestEtcdMemberFencedOnItsKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/fenced/")
	cfg.LockTTL = 2 * time.Second
	a, err := openMember(t, cfg, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	kv := a.kv.(*etcdKV)
	registered := make(chan struct{}, 4)
	a.onRegistered(func() { registered <- struct{}{} })
	cli := rawEtcd(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// The lease ends (etcd lost this coordinator for longer than the
	// TTL) and, before it is back, another process registers "a".
	mustUpdate(t, a, func(tx *Tx) error { return tx.kv.setLeased([]byte("o/held"), []byte("x")) })
	usurper, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, kv.fence.Load().lease); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, cfg.Prefix+"c/a", `{"instance":"a","process":"another"}`, clientv3.WithLease(usurper.ID)); err != nil {
		t.Fatal(err)
	}
	err = a.Update(func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "from-the-past"}) })
	if err == nil || !contains(err.Error(), "lease was lost") {
		t.Fatalf("a write after the lease ended: %v", err)
	}
	if names := userNames(t, a); len(names) != 0 {
		t.Fatalf("written without the lease: %v", names)
	}
	// Its lease-held keys went with the lease.
	if resp, err := cli.Get(ctx, cfg.Prefix+"o/held"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("a leased key outlived its lease: %v %v", resp.Kvs, err)
	}
	// The other process stops: "a" registers again and writes.
	if _, err := cli.Revoke(ctx, usurper.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-registered:
	case <-ctx.Done():
		t.Fatal("did not register again")
	}
	mustUpdate(t, a, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "after-the-lapse"}) })

	// An operator deletes the key under a live lease: the next write
	// fails, and the store registers again.
	if _, err := cli.Delete(ctx, cfg.Prefix+"c/a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "unfenced"}) }); err == nil {
		t.Fatal("a write without the member key")
	}
	select {
	case <-registered:
	case <-ctx.Done():
		t.Fatal("did not register again after its key was deleted")
	}
	mustUpdate(t, a, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "again"}) })
}

// TestEtcdWatchSeesOtherMembers: a watch from a transaction's revision
// hands over every later change under its prefix, another member's and
// its own, deletes and lease ends included, in order; one that starts
// behind etcd's compaction gets the prefix afresh as a reset.
func TestEtcdWatchSeesOtherMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/watched/")
	a, err := openMember(t, cfg, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := openMember(t, cfg, "b", "")
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, b, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "before"}) })
	var rev int64
	if err := a.View(func(tx *Tx) error { var err error; rev, err = tx.revision(); return err }); err != nil || rev == 0 {
		t.Fatalf("revision %d: %v", rev, err)
	}
	seen := make(chan watchBatch, 16)
	a.watch("u/", rev, func(wb watchBatch) { seen <- wb })
	mustUpdate(t, b, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "x"}) })
	mustUpdate(t, b, func(tx *Tx) error { return tx.PutGroup(&pb.Group{Code: "not-watched"}) })
	mustUpdate(t, a, func(tx *Tx) error { return tx.DeleteUser("x") })
	mustUpdate(t, b, func(tx *Tx) error { return tx.kv.setLeased([]byte("u/leased"), []byte("v")) })
	b.Close() // its lease ends: u/leased goes
	var got []string
	for len(got) < 4 {
		select {
		case wb := <-seen:
			if wb.reset {
				t.Fatalf("a reset: %+v", wb)
			}
			for _, e := range wb.events {
				got = append(got, fmt.Sprintf("%s=%v", e.key, e.value != nil))
				if e.rev <= rev || e.rev > wb.rev {
					t.Errorf("event at %d in a batch of %d after %d", e.rev, wb.rev, rev)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("saw %v", got)
		}
	}
	if want := []string{"u/x=true", "u/x=false", "u/leased=true", "u/leased=false"}; !slices.Equal(got, want) {
		t.Fatalf("saw %v, want %v", got, want)
	}

	// Behind the compaction: the prefix afresh.
	cli := rawEtcd(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	mustUpdate(t, a, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "after"}) })
	var now int64
	if err := a.View(func(tx *Tx) error { var err error; now, err = tx.revision(); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, now); err != nil {
		t.Fatal(err)
	}
	resets := make(chan watchBatch, 4)
	a.watch("u/", rev, func(wb watchBatch) { resets <- wb })
	select {
	case wb := <-resets:
		var keys []string
		for _, e := range wb.events {
			keys = append(keys, e.key)
		}
		if !wb.reset || !slices.Equal(keys, []string{"u/after", "u/before"}) || wb.rev < now {
			t.Fatalf("after compaction: reset %v keys %v at %d", wb.reset, keys, wb.rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reset after compaction")
	}
}

// TestBadgerIsTheOnlyMember: on Badger the coordinator is its site's only
// member; a watch never fires and leased keys are plain ones.
func TestBadgerIsTheOnlyMember(t *testing.T) {
	st, err := OpenStore(t.TempDir(), StoreOptions{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.shared() {
		t.Fatal("Badger is shared")
	}
	st.watch("u/", 0, func(watchBatch) { t.Error("a Badger watch fired") })
	mustUpdate(t, st, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "u"}) })
	if err := st.announce([]string{"/ip4/127.0.0.1/tcp/1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.View(func(tx *Tx) error { r, err := tx.revision(); _ = r; return err }); err != nil {
		t.Fatal(err)
	}
}

func TestInstanceNames(t *testing.T) {
	for _, ok := range []string{"a", "coord-1", "x9", strings.Repeat("a", 63)} {
		if err := ValidInstance(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a.b", "a/b", "a b", strings.Repeat("a", 64), "c/../x"} {
		if err := ValidInstance(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := ValidInstance(DefaultInstance()); err != nil {
		t.Errorf("the default %q: %v", DefaultInstance(), err)
	}
}
