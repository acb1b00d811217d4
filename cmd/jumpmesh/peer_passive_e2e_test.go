package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
)

// TestPassivePeerThroughTheCLI: a peer installed with --connection passive,
// run by its init script (the real binary, the real clock), goes passive
// after the site's passive-idle-seconds: `peer status` says so and where
// it listens, `ls` shows it passive; a plain `jump` wakes it (the
// coordinator sends the command to the site's passive-port) and runs the
// command; `peer status` then counts the command accepted.
func TestPassivePeerThroughTheCLI(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	port := coordinatortest.FreePort(t, "tcp")
	ok(t, admin, nil, "settings", "set", "passive-idle-seconds=10", "passive-port="+strconv.Itoa(port))
	var in struct{ Key string }
	ok(t, admin, &in, "installer", "create", "--name", "sleepy-01", "--connection", "passive", "--valid-for", "1h", "--json")
	me, _ := user.Current()
	hostDir := filepath.Join(dir, "host", "jumpmesh")
	os.MkdirAll(filepath.Dir(hostDir), 0o755)
	ok(t, dir, nil, "peer", "install", "--key", in.Key, "--install-dir", hostDir, "--user", me.Username)
	if code, out := initScript(t, hostDir, "start"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(hostDir, "init-script")); err == nil {
			initScript(t, hostDir, "stop")
		}
	})
	status := func() string {
		var peers []struct{ Status string }
		r := jm(t, admin, "ls", "name:sleepy-01", "--json")
		if r.code != 0 || jsonInto(r.stdout, &peers) != nil || len(peers) != 1 {
			return ""
		}
		return peers[0].Status
	}
	waitFor(t, 30*time.Second, "sleepy-01 online", func() bool { return status() == "online" })

	type local struct {
		Connected       bool
		Connection      string
		Passive         bool
		PassiveListen   string `json:"passive_listen"`
		PassiveCounters *struct {
			Accepted uint64
		} `json:"passive_counters"`
	}
	var st local
	waitFor(t, 60*time.Second, "peer status: passive", func() bool {
		st = local{}
		r := jm(t, dir, "peer", "status", "--dir", hostDir, "--json")
		return r.code == 0 && jsonInto(r.stdout, &st) == nil && st.Passive
	})
	if st.Connected || st.Connection != "passive" || !strings.HasSuffix(st.PassiveListen, ":"+strconv.Itoa(port)) {
		t.Fatalf("peer status of a passive peer: %+v", st)
	}
	if r := ok(t, dir, nil, "peer", "status", "--dir", hostDir); !strings.Contains(r.stdout, "not connected, listening on") {
		t.Fatalf("peer status:\n%s", r.stdout)
	}
	waitFor(t, 30*time.Second, "ls: passive", func() bool { return status() == "passive" })

	r := jm(t, admin, "jump", "sleepy-01", "--", "echo", "awake")
	if r.code != 0 || r.stdout != "awake\n" {
		t.Fatalf("jump to the passive peer: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 30*time.Second, "peer status: the command accepted", func() bool {
		st = local{}
		r := jm(t, dir, "peer", "status", "--dir", hostDir, "--json")
		return r.code == 0 && jsonInto(r.stdout, &st) == nil && st.PassiveCounters != nil && st.PassiveCounters.Accepted == 1
	})
	if r := ok(t, dir, nil, "peer", "status", "--dir", hostDir); !strings.Contains(r.stdout, "wake commands:") || !strings.Contains(r.stdout, "accepted 1") {
		t.Fatalf("peer status after the wake:\n%s", r.stdout)
	}
}
