package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAdminFlowThroughTheCLI(t *testing.T) {
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin-home")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	if st, err := os.Stat(filepath.Join(admin, "technician.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("technician key: %v", err)
	}

	// Flags may follow positional arguments.
	var inv struct {
		Code  string `json:"code"`
		Login string `json:"login_command"`
		User  struct{ Role string }
	}
	ok(t, admin, &inv, "user", "invite", "alice", "--role", "technician", "--json")
	if inv.User.Role != "technician" || !strings.Contains(inv.Login, inv.Code) {
		t.Fatalf("invite = %+v", inv)
	}
	alice := filepath.Join(dir, "alice-home")
	ok(t, alice, nil, "login", coord.addr, inv.Code)
	var who struct{ Name, Role string }
	ok(t, alice, &who, "whoami", "--json")
	if who.Name != "alice" || who.Role != "technician" {
		t.Fatalf("whoami = %+v", who)
	}
	failCode(t, alice, "permission_denied", "user", "list")

	ok(t, admin, nil, "group", "create", "servers", "--name", "Server Support", "--team-lead", "alice")
	ok(t, admin, nil, "jump-policy", "create", "office", "--tz", "Europe/Paris", "--window", "mon-fri 08:00-18:00")
	ok(t, admin, nil, "session-policy", "create", "unattended", "--allow", "shell,exec")
	var set struct {
		Values    map[string]string `json:"values"`
		PeersTold *int              `json:"peers_told"`
	}
	ok(t, admin, &set, "settings", "set", "lost-after-days=20", "connection-rate=120", "--json")
	if set.Values["connection-rate"] != "120" || set.PeersTold == nil || *set.PeersTold != 0 {
		t.Fatalf("settings set --json = %+v, want the values and peers_told 0 (no peer online)", set)
	}
	var settings map[string]string
	ok(t, alice, &settings, "settings", "show", "--json")
	if settings["connection-rate"] != "120" || settings["lost-after-days"] != "20" {
		t.Fatalf("settings = %v", settings)
	}
	failCode(t, admin, "out_of_range", "settings", "set", "connection-rate=301")

	var in struct {
		ID, Key, Status string
		Group           string   `json:"jump_group"`
		Overridable     []string `json:"overridable"`
		Command         string   `json:"install_command"`
	}
	ok(t, alice, &in, "installer", "create", "--group", "jumpgroup:servers", "--tag", "linux", "--jump-policy", "office",
		"--session-policy-not-present", "unattended", "--allow-override", "name,comments", "--valid-for", "7d", "--json")
	if in.Status != "valid" || in.Group != "jumpgroup:servers" || len(in.Overridable) != 2 || !strings.Contains(in.Command, in.Key) {
		t.Fatalf("installer = %+v", in)
	}
	// The key verifies offline, pinned to the site, with no coordinator involved.
	ok(t, dir, nil, "installer", "verify", in.Key, "--site", init.Site)
	failCode(t, dir, "key_bad_signature", "installer", "verify", tamper(in.Key))
	failCode(t, dir, "key_bad_encoding", "installer", "verify", "jmk1.%%%")
	failCode(t, dir, "key_unknown_version", "installer", "verify", "jmk9.AAAA.AAAA")

	var list []struct{ ID string }
	ok(t, admin, &list, "installer", "list", "--json")
	if len(list) != 1 || list[0].ID != in.ID {
		t.Fatalf("installer list = %+v", list)
	}
	failCode(t, admin, "in_use", "jump-policy", "delete", "office")
	ok(t, admin, nil, "installer", "delete", in.ID)
	failCode(t, admin, "key_revoked", "installer", "verify", in.Key, "--online")
	ok(t, admin, nil, "jump-policy", "delete", "office")

	ok(t, admin, nil, "user", "remove", "alice")
	failCode(t, alice, "unknown_technician", "whoami")
}

func (i initOut) loginAddr(t testing.TB) string {
	t.Helper()
	for _, a := range i.LoginAddrs {
		if strings.Contains(a, "/tcp/") && !strings.Contains(a, "/tcp/0/") {
			return a
		}
	}
	t.Fatalf("no usable login address in %v", i.LoginAddrs)
	return ""
}

// tamper flips one character of the key's body.
func tamper(key string) string {
	b := []byte(key)
	i := len("jmk1.") + 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestUsageAndNotLoggedInErrors(t *testing.T) {
	home := t.TempDir()
	if r := jm(t, home, "user", "invite"); r.code != exitUsage || !strings.Contains(r.stderr, "NAME") {
		t.Fatalf("missing argument: exit %d, %q", r.code, r.stderr)
	}
	if r := jm(t, home, "user", "list", "--no-such-flag"); r.code != exitUsage {
		t.Fatalf("unknown flag: exit %d, %q", r.code, r.stderr)
	}
	failCode(t, home, "not_logged_in", "whoami")
	failCode(t, home, "invalid_argument", "login", "/ip4/127.0.0.1/tcp/1", "code")
	r := jm(t, home, "errors", "--json")
	var catalog []struct{ Code, Message string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &catalog) != nil || len(catalog) < 20 {
		t.Fatalf("errors --json: exit %d %q", r.code, r.stdout)
	}
}

func TestCoordinatorInitRefusesExistingSite(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "site")
	ok(t, dir, nil, "coordinator", "init", "--data", data)
	failCode(t, dir, "site_exists", "coordinator", "init", "--data", data)
	r := jm(t, dir, "coordinator", "run", "--data", filepath.Join(dir, "nothing"))
	if r.code != exitError || !strings.Contains(r.stderr, "No site in this data directory") {
		t.Fatalf("run without a site: exit %d, %q", r.code, r.stderr)
	}
}

// TestAcknowledgedWritesSurviveKill9 kills the coordinator process with
// SIGKILL right after the last acknowledged write and checks that every
// acknowledged write is there after a restart.
func TestAcknowledgedWritesSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "site")
	port := freeTCPPort(t)
	listen := "/ip4/127.0.0.1/tcp/" + port
	var init initOut
	ok(t, dir, &init, "coordinator", "init", "--data", data, "--listen", listen, "--json")
	p := startCoordinator(t, data)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", init.loginAddr(t), init.Invite)

	const n = 8
	var ids []string
	for i := 0; i < n; i++ {
		var in struct{ ID string }
		ok(t, admin, &in, "installer", "create", "--tag", "t"+string(rune('a'+i)), "--valid-for", "1h", "--json")
		ids = append(ids, in.ID)
	}
	ok(t, admin, nil, "user", "invite", "bob")
	ok(t, admin, nil, "settings", "set", "connection-rate=7")
	ok(t, admin, nil, "installer", "delete", ids[0])
	p.kill(syscall.SIGKILL)

	startCoordinator(t, data)
	var list []struct{ ID, Status string }
	ok(t, admin, &list, "installer", "list", "--all", "--json")
	if len(list) != n {
		t.Fatalf("after kill -9: %d installers, want %d", len(list), n)
	}
	status := map[string]string{}
	for _, in := range list {
		status[in.ID] = in.Status
	}
	if status[ids[0]] != "deleted" || status[ids[n-1]] != "valid" {
		t.Fatalf("after kill -9: statuses %v", status)
	}
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

func TestCoordinatorStopsCleanlyOnSIGTERM(t *testing.T) {
	_, _, p := newSite(t)
	p.kill(syscall.SIGTERM)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "coordinator stopped") {
		t.Fatalf("no clean-stop log line:\n%s", p.stderr)
	}
	// The store was closed properly: the site opens again at once.
	_ = time.Second
}

func TestUsageErrorsExitTwo(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"bogus"},
		{"user", "bogus"},
		{"coordinator", "run"},
		{"coordinator", "init"},
		{"installer", "extend", "someid"},
		{"settings", "set"},
		{"settings", "set", "no-equals-sign"},
		{"relay", "run", "--data", home + "/relay", "--splice-addr", "4836"},
		{"relay", "run", "--data", home + "/relay", "--splice-addr", ":0"},
		{"relay", "run", "--data", home + "/relay", "--splice-addr", "198.51.100.20:99999"},
	} {
		r := jm(t, home, args...)
		if r.code != exitUsage || r.stdout != "" || !strings.HasPrefix(r.stderr, "jumpmesh: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("jumpmesh %s: exit %d, stdout %q, stderr %q; want exit 2 and one line on stderr", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if r := jm(t, home, "user"); r.code != 0 || !strings.Contains(r.stdout, "invite") {
		t.Errorf("a command group without arguments shows its help: exit %d %q", r.code, r.stdout)
	}
}

func TestDashArgumentsAreNotFlags(t *testing.T) {
	app := newApp(new(bytes.Buffer), new(bytes.Buffer))
	got := reorderArgs(app, []string{"jumpmesh", "ls", "tag:linux", "-status:offline", "--json", "web"})
	want := []string{"jumpmesh", "ls", "--json", "--", "tag:linux", "-status:offline", "web"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("reorderArgs = %q, want %q", got, want)
	}
	got = reorderArgs(app, []string{"jumpmesh", "user", "invite", "alice", "--role", "admin"})
	want = []string{"jumpmesh", "user", "invite", "--role", "admin", "--", "alice"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("reorderArgs = %q, want %q", got, want)
	}
}

func TestJumpCommandKeepsItsFlags(t *testing.T) {
	app := newApp(new(bytes.Buffer), new(bytes.Buffer))
	for _, c := range []struct{ in, want string }{
		{"jumpmesh jump web-01 ls -t", "jumpmesh jump -- web-01 ls -t"},
		{"jumpmesh jump web-01 -v -- uname -a", "jumpmesh jump -v -- web-01 -- uname -a"},
		{"jumpmesh jump -t web-01 top -d 1", "jumpmesh jump -t -- web-01 top -d 1"},
	} {
		if got := strings.Join(reorderArgs(app, strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
