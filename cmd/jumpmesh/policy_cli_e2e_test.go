package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyScript is every jump-policy and session-policy verb, in text and
// --json, with the usage and coordinator errors a person meets. Its
// transcript pins what both kinds print, so the one definition of policy
// commands (policyKind) keeps the behaviour of the two it replaced.
var policyScript = [][]string{
	{"jump-policy", "create", "office", "--tz", "Europe/Paris", "--window", "mon-fri 09:00-17:00", "--window", "sat,sun 10:00-12:00", "--description", "front desk"},
	{"jump-policy", "create", "night", "--tz", "UTC", "--window", "daily 22:00-24:00", "--json"},
	{"jump-policy", "create", "bad"},
	{"jump-policy", "create", "bad", "--json"},
	{"jump-policy", "create", "bad", "--tz", "UTC", "--window", "funday 09:00-10:00"},
	{"jump-policy", "create", "bad", "--tz", "Mars/Olympus", "--window", "mon 09:00-10:00"},
	{"jump-policy", "create", "office", "--tz", "UTC", "--window", "mon 09:00-10:00", "--json"},
	{"jump-policy", "create"},
	{"jump-policy", "update", "office", "--tz", "America/New_York"},
	{"jump-policy", "update", "office"},
	{"jump-policy", "update", "office", "--window", "mon 08:00-09:00", "--description", "", "--json"},
	{"jump-policy", "update", "office", "--window", "mon 09:00-08:00"},
	{"jump-policy", "update", "missing", "--tz", "UTC"},
	{"jump-policy", "list"},
	{"jump-policy", "list", "--json"},
	{"jump-policy", "list", "extra"},
	{"jump-policy", "show", "office"},
	{"jump-policy", "show", "office", "--json"},
	{"jump-policy", "show", "missing"},
	{"jump-policy", "show", "a", "b"},
	{"jump-policy", "delete", "night"},
	{"jump-policy", "delete", "night", "--json"},
	{"jump-policy", "delete", "office", "--json"},
	{"jump-policy", "list", "--json"},
	{"jump-policy", "list"},
	{"session-policy", "create", "full"},
	{"session-policy", "create", "attended", "--allow", "shell,file-transfer", "--require-consent", "--description", "with a user"},
	{"session-policy", "create", "mon", "--allow", "exec", "--allow-command", "uptime", "--allow-command", "systemctl status *", "--json"},
	{"session-policy", "create", "bad", "--allow", "funky"},
	{"session-policy", "create", "bad", "--allow", "none,shell"},
	{"session-policy", "create", "bad", "--allow", ","},
	{"session-policy", "create", "bad", "--allow-command", "x", "--any-command", "--json"},
	{"session-policy", "create", "full", "--json"},
	{"session-policy", "update", "mon"},
	{"session-policy", "update", "mon", "--any-command", "--json"},
	{"session-policy", "update", "attended", "--require-consent=false"},
	{"session-policy", "update", "attended", "--allow", "exec", "--allow-command", "df -h"},
	{"session-policy", "update", "attended", "--allow", "none"},
	{"session-policy", "update", "missing", "--allow", "shell"},
	{"session-policy", "update", "missing", "--allow-command", "x", "--any-command"},
	{"session-policy", "list"},
	{"session-policy", "list", "--json"},
	{"session-policy", "show", "mon"},
	{"session-policy", "show", "mon", "--json"},
	{"session-policy", "show", "missing", "--json"},
	{"session-policy", "delete", "full"},
	{"session-policy", "delete", "full", "--json"},
	{"session-policy", "delete", "mon", "--json"},
}

// TestPolicyCommandsThroughTheCLI runs policyScript against a real
// coordinator and checks the outcomes that matter to a script: exit codes,
// JSON shapes and the usage messages. JUMPMESH_POLICY_TRANSCRIPT=FILE writes
// the whole transcript, to compare two builds byte for byte.
func TestPolicyCommandsThroughTheCLI(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	var inv struct{ Code string }
	ok(t, admin, &inv, "user", "invite", "tina", "--role", "technician", "--json")
	tech := filepath.Join(dir, "tina")
	ok(t, tech, nil, "login", coord.addr, inv.Code)

	var b strings.Builder
	outcome := map[string]result{}
	for _, args := range policyScript {
		r := jm(t, admin, args...)
		key := strings.Join(args, " ")
		outcome[key] = r
		fmt.Fprintf(&b, "$ jumpmesh %q\nexit %d\n--- stdout\n%s--- stderr\n%s\n", args, r.code, r.stdout, r.stderr)
	}
	// A technician reads policies but does not change them.
	failCode(t, tech, "permission_denied", "jump-policy", "create", "x", "--tz", "UTC", "--window", "daily 00:00-24:00")
	failCode(t, tech, "permission_denied", "session-policy", "delete", "attended")
	ok(t, tech, nil, "session-policy", "show", "attended")
	if path := os.Getenv("JUMPMESH_POLICY_TRANSCRIPT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	want := func(code int, stdout, stderr string, args ...string) {
		t.Helper()
		r, found := outcome[strings.Join(args, " ")]
		if !found {
			t.Fatalf("%q is not in policyScript", args)
		}
		if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
			t.Errorf("jumpmesh %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				args, r.code, r.stdout, r.stderr, code, stdout, stderr)
		}
	}
	want(0, "windows:\n  mon-fri 09:00-17:00\n  sat,sun 10:00-12:00\n", "", policyScript[0]...)
	want(0, `"time_zone": "UTC"`, "", policyScript[1]...)
	want(exitUsage, "", "needs --tz ZONE and at least one --window", "jump-policy", "create", "bad")
	want(exitError, `"code": "policy_exists"`, "", "jump-policy", "create", "office", "--tz", "UTC", "--window", "mon 09:00-10:00", "--json")
	want(exitUsage, "", "nothing to change; give --tz, --window or --description", "jump-policy", "update", "office")
	want(exitError, "", "The policy does not exist. (jump policy missing)", "jump-policy", "update", "missing", "--tz", "UTC")
	want(0, "NAME", "", "jump-policy", "list")
	want(0, "Deleted jump policy night.", "", "jump-policy", "delete", "night")
	want(0, `"deleted": "office"`, "", "jump-policy", "delete", "office", "--json")
	want(0, "[]", "", "jump-policy", "list", "--json")
	want(0, "allows", "", "session-policy", "create", "full")
	want(exitUsage, "", `unknown capability "funky"`, "session-policy", "create", "bad", "--allow", "funky")
	want(exitUsage, "", "not both", "session-policy", "create", "bad", "--allow-command", "x", "--any-command", "--json")
	want(exitUsage, "", "nothing to change; give --allow, --allow-command, --any-command, --require-consent or --description", "session-policy", "update", "mon")
	want(0, "", "", "session-policy", "update", "mon", "--any-command", "--json")
	if strings.Contains(outcome["session-policy update mon --any-command --json"].stdout, "allow_commands") {
		t.Errorf("--any-command kept the list: %s", outcome["session-policy update mon --any-command --json"].stdout)
	}
	want(0, "commands:         df -h", "", "session-policy", "update", "attended", "--allow", "exec", "--allow-command", "df -h")
	want(0, "CONSENT", "", "session-policy", "list")
	want(0, "Deleted session policy full.", "", "session-policy", "delete", "full")
	want(exitError, `"detail": "(session policy full)"`, "", "session-policy", "delete", "full", "--json")
}
