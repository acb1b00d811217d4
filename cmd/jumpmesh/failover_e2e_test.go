package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
)

// TestFailoverAfterKillNineThroughTheCLI (issue 16 part 2): two
// coordinator processes of one site on one etcd, "a" and "b". Three peer
// processes enroll through "a" while "b" is not running; "b" starts, and
// "a" tells its peers (their state.json lists b) and the administrator's
// console (its console.json) of it. A jump's session is open when "a" is
// killed with SIGKILL: the peers come online through "b", the session
// runs on, and the console lists and jumps through "b" without being told
// anything.
func TestFailoverAfterKillNineThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	store := "etcd://" + srv.Endpoint
	dir := t.TempDir()
	data := filepath.Join(dir, "site")
	listenA, listenB := "/ip4/127.0.0.1/tcp/"+freeTCPPort(t), "/ip4/127.0.0.1/tcp/"+freeTCPPort(t)
	var init initOut
	ok(t, dir, &init, "coordinator", "init", "--data", data, "--listen", listenA, "--json")
	ok(t, dir, nil, "coordinator", "migrate", "--from", data, "--to", store)
	t.Setenv("JUMPMESH_STORE", store) // startCoordinator's processes inherit it
	t.Setenv("JUMPMESH_INSTANCE", "a")
	a := startCoordinator(t, data, listenA)

	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", a.addr, init.Invite)
	me, _ := user.Current()
	var hosts []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("web-%02d", i)
		var in struct{ Key string }
		ok(t, admin, &in, "installer", "create", "--name", name, "--valid-for", "1h", "--json")
		hostDir := filepath.Join(dir, "host-"+name, "jumpmesh")
		os.MkdirAll(filepath.Dir(hostDir), 0o755)
		ok(t, dir, nil, "peer", "install", "--key", in.Key, "--install-dir", hostDir, "--user", me.Username)
		if code, out := initScript(t, hostDir, "start"); code != 0 {
			t.Fatalf("start %s: %d %s", name, code, out)
		}
		t.Cleanup(func() { initScript(t, hostDir, "stop") })
		hosts = append(hosts, hostDir)
	}
	online := func() int {
		var peers []struct{ Status string }
		if r := jm(t, admin, "ls", "status:online", "--json"); r.code != 0 || jsonInto(r.stdout, &peers) != nil {
			return -1
		}
		return len(peers)
	}
	waitFor(t, 60*time.Second, "3 peers online through a", func() bool { return online() == 3 })

	t.Setenv("JUMPMESH_INSTANCE", "b")
	startCoordinator(t, data, listenB)
	knowsB := func(path string, field string) bool {
		raw, err := os.ReadFile(path)
		var v map[string]any
		if err != nil || json.Unmarshal(raw, &v) != nil {
			return false
		}
		list, _ := v[field].([]any)
		return slices.ContainsFunc(list, func(x any) bool { s, _ := x.(string); return strings.HasPrefix(s, listenB) })
	}
	for _, h := range hosts {
		waitFor(t, 30*time.Second, "the peer learning of b", func() bool { return knowsB(filepath.Join(h, "var", "state.json"), "site_addrs") })
	}
	waitFor(t, 30*time.Second, "the console learning of b", func() bool {
		jm(t, admin, "whoami")
		return knowsB(filepath.Join(admin, "console.json"), "coordinator")
	})

	// A session through a's grant, its stdin held open.
	cmd := exec.Command(binary, "jump", "web-01", "--", "sh", "-c", "echo ready; read line; echo got $line")
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+admin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for out.String() != "ready\n" {
		if time.Now().After(deadline) {
			t.Fatalf("the session did not start: stdout %q, stderr %q", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	killed := time.Now()
	a.kill(syscall.SIGKILL)
	// Each peer was welcomed again (by b: a is gone) after the kill.
	welcomed := func(h string) bool {
		var st struct {
			Connected   bool      `json:"connected"`
			LastContact time.Time `json:"last_contact"`
		}
		raw, err := os.ReadFile(filepath.Join(h, "var", "state.json"))
		return err == nil && json.Unmarshal(raw, &st) == nil && st.Connected && st.LastContact.After(killed)
	}
	for _, h := range hosts {
		// Twice in a row: the end of the session with a also writes the
		// last contact, just before the error that marks it disconnected.
		seen := 0
		waitFor(t, 60*time.Second, "the peer welcomed through b", func() bool {
			if seen = map[bool]int{true: seen + 1}[welcomed(h)]; seen >= 2 {
				return true
			}
			return false
		})
	}
	t.Logf("after kill -9 of a: 3 peers welcomed through b in %s (load %s)", time.Since(killed).Round(time.Millisecond), loadAverage())
	waitFor(t, 30*time.Second, "the console seeing 3 peers online through b", func() bool { return online() == 3 })

	fmt.Fprintln(stdin, "after")
	stdin.Close()
	select {
	case err := <-done:
		if err != nil || out.String() != "ready\ngot after\n" {
			t.Errorf("the session opened through a: %q, %v", out.String(), err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the session opened through a did not finish")
	}
	r := jm(t, admin, "jump", "web-02", "--", "echo", "through b")
	if r.code != 0 || r.stdout != "through b\n" {
		t.Fatalf("a jump after a died: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}
