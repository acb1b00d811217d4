package coordinator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// What an operator meets with etcd: the catalog's errors, and moving a
// site. Membership (several coordinators, one instance name each) is in
// members_test.go.

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
		plain := etcdtest.Start(t, etcdtest.Options{})
		// Each wrong setting waits out its dial timeout before the
		// endpoints are diagnosed: the cases wait side by side (they only
		// read the servers; "auth" below starts when all are done).
		for _, c := range []struct {
			name string
			bad  func(*EtcdConfig)
			want catalog.Code
		}{
			// The system's roots do not know the test's CA.
			{"system roots", func(c *EtcdConfig) { c.CACert, c.TLS = "", true }, catalog.CodeStoreTLS},
			{"plain text to a TLS port", func(c *EtcdConfig) { c.CACert = "" }, catalog.CodeStoreTLS},
			{"TLS to a plain port", func(c *EtcdConfig) { c.Endpoints = []string{plain.Endpoint} }, catalog.CodeStoreTLS},
			{"a CA file that is no certificate", func(c *EtcdConfig) { c.CACert = srv.ClientKey }, catalog.CodeInvalidArgument},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				bad := good
				c.bad(&bad)
				_, err := OpenEtcdStore(bad)
				wantCode(t, err, c.want)
			})
		}
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
	// A second process of the same instance (another copy of the data
	// directory: not this one restarting) is refused at once.
	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copyDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(copyDir, "site.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{DataDir: copyDir, HTTPAddr: "off", Store: to, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	wantCode(t, err, catalog.CodeStoreInUse)
	// Another instance serves the site beside it; each sees the other.
	second := to
	second.Instance = "second"
	c2, err := New(Config{DataDir: dir, HTTPAddr: "off", Store: second, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatalf("a second instance: %v", err)
	}
	defer c2.Close()
	both := func(s *Service) bool {
		ms := s.members()
		return len(ms) == 2 && len(ms[1].Addrs) > 0 && len(s.memberAddrs()) == len(ms[0].Addrs)+len(ms[1].Addrs)
	}
	eventually(t, 10*time.Second, "two members seen by each", func() bool { return both(c.service) && both(c2.service) })
	if ms := c2.service.members(); ms[0].Instance != "second" || !ms[0].Self || ms[1].Instance != DefaultInstance() || ms[1].Self {
		t.Fatalf("members of the second: %+v", ms)
	}
	if got, want := c2.service.memberAddrs()[0], c2.service.addrs()[0]; !got.Equal(want) {
		t.Fatalf("memberAddrs starts with %s, not its own %s", got, want)
	}
	// Migrating onto a running site's prefix is refused.
	_, err = Migrate(MigrateConfig{DataDir: dir, To: to, Force: true})
	wantCode(t, err, catalog.CodeStoreInUse)
	var changes atomic.Int32
	c2.service.onMembersChanged(func() { changes.Add(1) })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first gone from the second's members", func() bool {
		return len(c2.service.members()) == 1 && changes.Load() > 0
	})
	c3, err := New(Config{DataDir: dir, HTTPAddr: "off", Store: to})
	if err != nil {
		t.Fatalf("after the first coordinator stopped: %v", err)
	}
	c3.Close()
}
