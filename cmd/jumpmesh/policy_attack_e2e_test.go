package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Issue 11, findings 1 and 13, through the real binary: alice, a technician
// in jumpgroup:servers, is refused a shell on web-01 (exec-only), and runs
// `jumpmesh set web-01 --session-policy-present allowall
// --session-policy-not-present allowall --jump-policy ""`. It is refused
// with permission_denied, web-01 keeps its policies, her shell is still
// refused; the administrator reads both the changes that were made and who
// made them with `jumpmesh audit --kind admin`.
func TestTechnicianCannotStripPoliciesThroughTheCLI(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (e2e_test.go)
	s := newJumpSite(t)
	var inv struct{ Code string }
	ok(t, s.admin, &inv, "user", "invite", "alice", "--role", "technician", "--json")
	alice := filepath.Join(s.dir, "alice")
	ok(t, alice, nil, "login", s.coord.addr, inv.Code)
	ok(t, s.admin, nil, "group", "create", "servers", "--member", "alice")
	ok(t, s.admin, nil, "session-policy", "create", "exec-only", "--allow", "exec")
	ok(t, s.admin, nil, "session-policy", "create", "allowall", "--allow", "all")
	ok(t, s.admin, nil, "jump-policy", "create", "always", "--tz", "UTC", "--window", "daily 00:00-24:00")
	ok(t, s.admin, nil, "set", "web-01", "--group", "jumpgroup:servers", "--jump-policy", "always",
		"--session-policy-present", "exec-only", "--session-policy-not-present", "exec-only")

	shellRefused := func() {
		t.Helper()
		r := jm(t, alice, "jump", "web-01") // no command: a shell
		if r.code != exitJumpFailed || !strings.Contains(r.stderr, catalog.CodePermissionDenied.Message()) || !strings.Contains(r.stderr, "do not allow shell") {
			t.Fatalf("alice's shell: exit %d, stdout %q, stderr %q; want permission_denied", r.code, r.stdout, r.stderr)
		}
	}
	shellRefused()
	type settings struct {
		JumpPolicy              string `json:"jump_policy"`
		SessionPolicyPresent    string `json:"session_policy_present"`
		SessionPolicyNotPresent string `json:"session_policy_not_present"`
	}
	var before, after settings
	ok(t, s.admin, &before, "show", "web-01", "--json")

	failCode(t, alice, "permission_denied", "set", "web-01", "--session-policy-present", "allowall",
		"--session-policy-not-present", "allowall", "--jump-policy", "")

	ok(t, s.admin, &after, "show", "web-01", "--json")
	if after != before || after.SessionPolicyPresent != "exec-only" || after.JumpPolicy != "always" {
		t.Fatalf("web-01 after a refused set: %+v (before %+v)", after, before)
	}
	shellRefused()
	if r := jm(t, alice, "jump", "web-01", "--", "echo", "exec is allowed"); r.code != 0 || r.stdout != "exec is allowed\n" {
		t.Fatalf("alice's exec: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	ok(t, alice, nil, "set", "web-01", "--tag", "rack-4")

	var events []struct{ Kind, Action, Target, User, Detail string }
	ok(t, s.admin, &events, "audit", "--kind", "admin", "--json")
	var lines []string
	for _, e := range events {
		if e.Kind != "admin" {
			t.Fatalf("audit --kind admin printed a %s event", e.Kind)
		}
		lines = append(lines, e.User+" "+e.Action+" "+e.Target+": "+e.Detail)
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"admin user.invite alice",
		"admin session-policy.create exec-only",
		`admin peer.set web-01: group: "user:admin" → "jumpgroup:servers"; jump-policy: (none) → "always"; session-policy-present: (none) → "exec-only"`,
		`alice peer.set web-01: tag: (none) → "rack-4"`,
	} {
		if !strings.Contains(all, want) {
			t.Fatalf("audit --kind admin lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "allowall\"") && strings.Contains(all, "alice peer.set web-01: session") {
		t.Fatalf("the refused set was recorded as a change:\n%s", all)
	}
	if r := jm(t, s.admin, "audit", "--kind", "admn"); r.code != exitUsage || !strings.Contains(r.stderr, "--kind is") {
		t.Fatalf("audit --kind admn: exit %d, %q", r.code, r.stderr)
	}
}
