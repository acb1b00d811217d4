package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	coordinatortest.Eventually(t, timeout, what, cond)
}

// initScript runs DIR/init-script ACTION and returns its exit code and output.
func initScript(t testing.TB, dir, action string) (int, string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(dir, "init-script"), action).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("init-script %s: %v", action, err)
	}
	return 0, string(out)
}

func TestPeerThroughTheCLIAndInitScript(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	// Short statistics interval: a silent peer is offline after 3 intervals.
	ok(t, admin, nil, "settings", "set", "stats-interval=5s")
	var in struct{ Key string }
	ok(t, admin, &in, "installer", "create", "--tag", "linux", "--allow-override", "name", "--valid-for", "1h", "--json")

	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(dir, "host", "jumpmesh")
	os.MkdirAll(filepath.Dir(hostDir), 0o755)
	// A forbidden override fails silently with --silent and leaves nothing.
	if r := jm(t, dir, "peer", "install", "--key", in.Key, "--install-dir", hostDir, "--user", me.Username, "--jc-tag", "x", "--silent"); r.code != exitError || r.stdout != "" || r.stderr != "" {
		t.Fatalf("silent failed install: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(hostDir); !os.IsNotExist(err) {
		t.Fatal("failed install left its directory")
	}
	var installed struct {
		PeerID string `json:"peer_id"`
	}
	ok(t, dir, &installed, "peer", "install", "--key", in.Key, "--install-dir", hostDir, "--user", me.Username, "--jc-name", "web-01", "--json")

	status := func() string {
		var peers []struct{ Name, Status string }
		r := jm(t, admin, "ls", "name:web-01", "--deleted", "--json")
		if r.code != 0 || jsonInto(r.stdout, &peers) != nil || len(peers) != 1 {
			return ""
		}
		return peers[0].Status
	}
	if code, out := initScript(t, hostDir, "status"); code != 3 {
		t.Fatalf("status before start: %d %s", code, out)
	}
	if code, out := initScript(t, hostDir, "start"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(hostDir, "init-script")); err == nil {
			initScript(t, hostDir, "stop")
		}
	})
	waitFor(t, 30*time.Second, "web-01 online", func() bool { return status() == "online" })
	if code, out := initScript(t, hostDir, "status"); code != 0 || !strings.Contains(out, "running") {
		t.Fatalf("status: %d %s", code, out)
	}
	var local struct {
		Connected bool
		Name      string
		PeerID    string `json:"peer_id"`
	}
	// The coordinator lists the peer online once its hello registered it;
	// the daemon writes what `peer status` reads once it has the welcome,
	// a moment later (it failed once at load 12 asked at once).
	connected := func() bool {
		ok(t, dir, &local, "peer", "status", "--dir", hostDir, "--json")
		return local.Connected && local.Name == "web-01"
	}
	waitFor(t, 10*time.Second, "peer status connected as web-01", connected)
	if local.PeerID != installed.PeerID {
		t.Fatalf("peer status = %+v, want peer ID %s", local, installed.PeerID)
	}
	if code, out := initScript(t, hostDir, "restart"); code != 0 {
		t.Fatalf("restart: %d %s", code, out)
	}
	waitFor(t, 30*time.Second, "web-01 online after restart", func() bool { return status() == "online" })

	// kill -9: the init script sees a dead process, the coordinator an offline peer.
	pid := readPID(t, hostDir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the process gone", func() bool { return syscall.Kill(pid, 0) != nil })
	if code, _ := initScript(t, hostDir, "status"); code != 1 {
		t.Fatalf("status after kill -9: %d, want 1 (dead, pid file left)", code)
	}
	waitFor(t, 60*time.Second, "web-01 offline after kill -9", func() bool { return status() == "offline" })

	// Disabled locally: the coordinator shows it.
	if code, out := initScript(t, hostDir, "start"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	waitFor(t, 30*time.Second, "web-01 online", func() bool { return status() == "online" })
	ok(t, dir, nil, "peer", "disable", "--dir", hostDir)
	waitFor(t, 30*time.Second, "web-01 disabled", func() bool { return status() == "disabled" })
	ok(t, dir, nil, "peer", "enable", "--dir", hostDir)
	waitFor(t, 30*time.Second, "web-01 enabled", func() bool { return status() == "online" })

	// Deleted while stopped: it uninstalls itself at its next start.
	if code, out := initScript(t, hostDir, "stop"); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	if code, _ := initScript(t, hostDir, "status"); code != 3 {
		t.Fatalf("status after stop: %d, want 3", code)
	}
	waitFor(t, 30*time.Second, "web-01 offline", func() bool { return status() == "offline" })
	ok(t, admin, nil, "rm", "web-01")
	if s := status(); s != "deleted" {
		t.Fatalf("after rm: %q, want deleted", s)
	}
	initScript(t, hostDir, "start")
	waitFor(t, 30*time.Second, "the install directory removed", func() bool {
		_, err := os.Stat(hostDir)
		return os.IsNotExist(err)
	})
	waitFor(t, 30*time.Second, "web-01 gone from the coordinator", func() bool { return status() == "" })
}

func readPID(t testing.TB, dir string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "run", "peer.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
