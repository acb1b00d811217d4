package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
)

// TestCoordinatorOnEtcdThroughTheCLI moves a site to a real etcd with
// `coordinator migrate`, runs it with --store etcd://, refuses a second
// coordinator of the same instance name on the same prefix, and finds every
// acknowledged write after a kill -9 (the restarted coordinator waits for
// its old member key to lapse).
func TestCoordinatorOnEtcdThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	store := "etcd://" + srv.Endpoint
	dir := t.TempDir()
	data := filepath.Join(dir, "site")
	listen := "/ip4/127.0.0.1/tcp/" + freeTCPPort(t)
	var init initOut
	ok(t, dir, &init, "coordinator", "init", "--data", data, "--listen", listen, "--json")

	var moved struct{ Records int }
	ok(t, dir, &moved, "coordinator", "migrate", "--from", data, "--to", store, "--json")
	if moved.Records < 2 {
		t.Fatalf("migrated %d records", moved.Records)
	}
	failCode(t, dir, "store_not_empty", "coordinator", "migrate", "--from", data, "--to", store)
	r := ok(t, dir, nil, "coordinator", "migrate", "--from", data, "--to", store, "--force")
	if !strings.Contains(r.stdout, "verified: same count and SHA-256") {
		t.Fatalf("migrate --force said %q", r.stdout)
	}
	runFails(t, dir, "Cannot reach the site's etcd store", "coordinator", "run", "--data", data, "--store", "etcd://127.0.0.1:1")
	runFails(t, dir, "the scheme is etcd:// or etcds://", "coordinator", "run", "--data", data, "--store", "mysql://x")
	runFails(t, dir, "use 1-63 of a-z, 0-9 and -", "coordinator", "run", "--data", data, "--store", store, "--instance", "Coord_1")

	t.Setenv("JUMPMESH_STORE", store) // startCoordinator's processes inherit it
	p := startCoordinator(t, data)
	// A second coordinator of the same instance name (the host name by
	// default) elsewhere is refused at once.
	other := filepath.Join(dir, "copy")
	ok(t, dir, nil, "coordinator", "init", "--data", other)
	runFails(t, dir, "Another coordinator is serving this site", "coordinator", "run", "--data", other, "--etcd-prefix", "/jumpmesh/"+init.Site+"/",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--http-addr", "off")

	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", init.loginAddr(t), init.Invite)
	ok(t, admin, nil, "user", "invite", "bob")
	ok(t, admin, nil, "settings", "set", "connection-rate=7")
	p.kill(syscall.SIGKILL)

	startCoordinator(t, data)
	var settings map[string]string
	ok(t, admin, &settings, "settings", "show", "--json")
	if settings["connection-rate"] != "7" {
		t.Fatalf("after kill -9: connection-rate %q", settings["connection-rate"])
	}
	var users []struct{ Name string }
	ok(t, admin, &users, "user", "list", "--json")
	if len(users) != 2 {
		t.Fatalf("after kill -9: users %v", users)
	}
}

// runFails runs a command that must fail saying want.
func runFails(t *testing.T, home, want string, args ...string) {
	t.Helper()
	r := jm(t, home, args...)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("jumpmesh %s: exit %d, stderr %q; want a failure saying %q", strings.Join(args, " "), r.code, r.stderr, want)
	}
}
