package coordinator

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// What an operator meets with etcd: the catalog's errors, the coordinator
// lock, and moving a site.

func rawEtcd(t *testing.T, cfg EtcdConfig) *clientv3.Client {
	t.Helper()
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{scheme + cfg.Endpoints[0]}, TLS: tlsCfg, Logger: zap.NewNop(),
		Username: cfg.Username, Password: cfg.Password, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestEtcdStoreErrorsNameTheCause(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	t.Run("unreachable", func(t *testing.T) {
		cfg := EtcdConfig{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/x/", DialTimeout: 1500 * time.Millisecond}
		_, err := OpenEtcdStore(cfg)
		wantCode(t, err, catalog.CodeStoreUnreachable)
	})
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	good := EtcdConfig{Endpoints: []string{srv.Endpoint}, Prefix: "/jumpmesh/tls/", CACert: srv.CA, DialTimeout: 3 * time.Second}
	t.Run("tls", func(t *testing.T) {
		st, err := OpenEtcdStore(good)
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, st, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "over-tls"}) })
		st.Close()
		// The system's roots do not know the test's CA.
		bad := good
		bad.CACert, bad.TLS = "", true
		_, err = OpenEtcdStore(bad)
		wantCode(t, err, catalog.CodeStoreTLS)
		// Plain text to a TLS port.
		bad = good
		bad.CACert = ""
		_, err = OpenEtcdStore(bad)
		wantCode(t, err, catalog.CodeStoreTLS)
		// TLS to a plain port.
		plain := etcdtest.Start(t, etcdtest.Options{})
		bad = good
		bad.Endpoints = []string{plain.Endpoint}
		_, err = OpenEtcdStore(bad)
		wantCode(t, err, catalog.CodeStoreTLS)
		// A CA file that is no certificate.
		bad = good
		bad.CACert = srv.ClientKey
		_, err = OpenEtcdStore(bad)
		wantCode(t, err, catalog.CodeInvalidArgument)
	})
	t.Run("auth", func(t *testing.T) {
		cli := rawEtcd(t, good)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for _, step := range []func() error{
			func() error { _, err := cli.UserAdd(ctx, "root", "root-pw"); return err },
			func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
			func() error { _, err := cli.AuthEnable(ctx); return err },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		// etcd checks passwords with bcrypt: slow under -race on a loaded
		// machine, so the dial timeout is generous.
		good := good
		good.DialTimeout = 30 * time.Second
		withUser := good
		withUser.Username, withUser.Password = "root", "root-pw"
		st, err := OpenEtcdStore(withUser)
		if err != nil {
			t.Fatal(err)
		}
		if names := userNames(t, st); len(names) != 1 {
			t.Fatalf("as root: %v", names)
		}
		st.Close()
		withUser.Password = "guess"
		_, err = OpenEtcdStore(withUser)
		wantCode(t, err, catalog.CodeStoreAuth)
		// No credentials at all, with auth on.
		_, err = OpenEtcdStore(good)
		wantCode(t, err, catalog.CodeStoreAuth)
	})
}

// TestEtcdStoreLockKeepsOneCoordinator: a second store taking the lock on
// the same prefix is refused until the first closes; one whose lock was
// taken from it writes nothing more.
func TestEtcdStoreLockKeepsOneCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/locked/")
	cfg.Lock, cfg.Holder = true, "first coordinator"
	first, err := OpenEtcdStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Holder = "second coordinator"
	_, err = OpenEtcdStore(cfg)
	wantCode(t, err, catalog.CodeStoreInUse)
	if ce := err.(*catalog.Error); !contains(ce.Detail, "first coordinator") {
		t.Errorf("the refusal does not name the holder: %v", err)
	}
	// Another prefix is another site.
	other := cfg
	other.Prefix = "/jumpmesh/locked-too/"
	st, err := OpenEtcdStore(other)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Records are not the lock: lists never show it.
	mustUpdate(t, first, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "u"}) })
	n, _, err := storeDigest(first)
	if err != nil || n != 1 {
		t.Fatalf("store holds %d keys (%v), want 1: the lock key is listed", n, err)
	}
	first.Close()
	second, err := OpenEtcdStore(cfg)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	defer second.Close()
	// The lock goes (an operator deletes it; a lease runs out) and
	// another coordinator takes it: the old one must not write.
	cli := rawEtcd(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, cfg.Prefix+lockKeyName); err != nil {
		t.Fatal(err)
	}
	third, err := OpenEtcdStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	err = second.Update(func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "from-the-past"}) })
	if err == nil || !contains(err.Error(), "lock was lost") {
		t.Fatalf("a write without the lock: %v", err)
	}
	mustUpdate(t, third, func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "from-the-holder"}) })

	// The holder's lease runs out (etcd away longer than the TTL): it
	// takes the free lock again and writes again.
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(third.kv.(*etcdKV).lockLease.Load())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := third.Update(func(tx *Tx) error { return tx.PutUser(&pb.User{Name: "after-the-lapse"}) })
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lock was not taken again: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestCoordinatorRunsOnEtcd: init a site (Badger), migrate it, run the
// coordinator on etcd; a second coordinator on the same prefix is refused.
func TestCoordinatorRunsOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	dir := filepath.Join(t.TempDir(), "site")
	res, err := InitSite(InitConfig{DataDir: dir, HTTPAddr: "off", Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	to := StoreConfig{URL: "etcd://" + srv.Endpoint}
	mr, err := Migrate(MigrateConfig{DataDir: dir, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if mr.Records < 2 || mr.Prefix != DefaultEtcdPrefix(res.SiteID.String()) {
		t.Fatalf("migrated %+v", mr)
	}
	// Again: the destination is not empty now.
	_, err = Migrate(MigrateConfig{DataDir: dir, To: to})
	wantCode(t, err, catalog.CodeStoreNotEmpty)
	mr2, err := Migrate(MigrateConfig{DataDir: dir, To: to, Force: true})
	if err != nil || mr2.Replaced != mr.Records || mr2.Digest != mr.Digest {
		t.Fatalf("forced migration: %+v %v", mr2, err)
	}
	c, err := New(Config{DataDir: dir, HTTPAddr: "off", Store: to})
	if err != nil {
		t.Fatal(err)
	}
	// The invite made by init is in etcd: the service reads it there.
	var invites int
	err = c.store.View(func(tx *Tx) error { is, err := tx.Invites(); invites = len(is); return err })
	if err != nil || invites != 1 {
		t.Fatalf("invites on etcd: %d %v", invites, err)
	}
	_, err = New(Config{DataDir: dir, HTTPAddr: "off", Store: to, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	wantCode(t, err, catalog.CodeStoreInUse)
	// Migrating onto a running coordinator's prefix is refused too.
	_, err = Migrate(MigrateConfig{DataDir: dir, To: to, Force: true})
	wantCode(t, err, catalog.CodeStoreInUse)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := New(Config{DataDir: dir, HTTPAddr: "off", Store: to})
	if err != nil {
		t.Fatalf("after the first coordinator stopped: %v", err)
	}
	c2.Close()
}
