package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPeerInstalledByRootForAnotherUser runs the real binary as root and
// as the peer's user (nobody), issue 11 findings 6 and 9: the peer runs as
// the user, root's init-script still recognises and stops it, and the
// user cannot lift the site's restriction by editing its state.
func TestPeerInstalledByRootForAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs for another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("needs the nobody user")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	asNobody := func(args ...string) result {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		out, err := cmd.Output()
		r := result{stdout: string(out)}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code, r.stderr = ee.ExitCode(), string(ee.Stderr)
		} else if err != nil {
			t.Fatalf("running %v as nobody: %v", args, err)
		}
		return r
	}

	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	ok(t, admin, nil, "settings", "set", "restrict-local-uninstall=true")
	var in struct{ Key string }
	ok(t, admin, &in, "installer", "create", "--name", "web-07", "--valid-for", "1h", "--json")
	hostDir := filepath.Join(dir, "host", "jumpmesh")
	os.MkdirAll(filepath.Dir(hostDir), 0o755)
	for d := filepath.Dir(hostDir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's directories are 0700: let nobody walk down
	}
	ok(t, dir, nil, "peer", "install", "--key", in.Key, "--install-dir", hostDir, "--user", nobody.Username, "--json")
	if code, out := initScript(t, hostDir, "start"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	t.Cleanup(func() { initScript(t, hostDir, "stop") })
	pid := readPID(t, hostDir)
	if st, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Fatalf("the peer (pid %d) does not run as nobody: %v", pid, err)
	}
	status := func() string {
		var peers []struct{ Status string }
		r := jm(t, admin, "ls", "name:web-07", "--json")
		if r.code != 0 || jsonInto(r.stdout, &peers) != nil || len(peers) != 1 {
			return ""
		}
		return peers[0].Status
	}
	waitFor(t, 30*time.Second, "web-07 online", func() bool { return status() == "online" })
	if code, out := initScript(t, hostDir, "status"); code != 0 || !strings.Contains(out, "running") {
		t.Fatalf("root's status of the peer running as nobody: %d %s", code, out)
	}

	// The user's disable is refused, also after editing the state.
	bin := filepath.Join(hostDir, "jumpmesh")
	refused := func(what string) {
		t.Helper()
		r := asNobody(bin, "peer", "disable", "--dir", hostDir, "--json")
		if r.code != exitError || !strings.Contains(r.stdout, "permission_denied") {
			t.Fatalf("%s: nobody's peer disable: exit %d %s %s", what, r.code, r.stdout, r.stderr)
		}
	}
	waitFor(t, 30*time.Second, "the statement stored", func() bool {
		raw, _ := os.ReadFile(filepath.Join(hostDir, "var", "state.json"))
		return strings.Contains(string(raw), "local_policy")
	})
	refused("as installed")
	initScript(t, hostDir, "stop") // the daemon would rewrite the state
	state := filepath.Join(hostDir, "var", "state.json")
	raw, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	delete(s, "local_policy")
	s["restrict_local_uninstall"] = false
	edited, _ := json.Marshal(s)
	cmd := exec.Command("sh", "-c", `cat > "$0.new" && mv "$0.new" "$0"`, state)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Stdin = strings.NewReader(string(edited))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nobody editing its state: %v %s", err, out)
	}
	refused("state edited")
	if r := asNobody(bin, "peer", "uninstall", "--dir", hostDir, "--json"); r.code != exitError || !strings.Contains(r.stdout, "permission_denied") {
		t.Fatalf("nobody's uninstall: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Root may.
	if code, out := initScript(t, hostDir, "start"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	waitFor(t, 30*time.Second, "web-07 online", func() bool { return status() == "online" })
	ok(t, dir, nil, "peer", "disable", "--dir", hostDir)
	waitFor(t, 30*time.Second, "web-07 disabled", func() bool { return status() == "disabled" })
	if code, out := initScript(t, hostDir, "stop"); code != 0 || !strings.Contains(out, "stopped") {
		t.Fatalf("root's stop of the peer: %d %s", code, out)
	}
}
