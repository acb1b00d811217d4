package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestJumpointInviteAndList: an administrator invites a jumpoint; the list
// shows it invited, then enrolled but offline; an installer cannot name it
// before it reports where it listens; its key is refused everything a
// console does (the ACL fetch itself is the jumpoint daemon's).
func TestJumpointInviteAndList(t *testing.T) {
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", coord.addr, init.Invite)

	var inv struct {
		Jumpoint string
		Code     string
		Run      string `json:"run_command"`
	}
	ok(t, admin, &inv, "jumpoint", "invite", "plant-a", "--valid-for", "1h", "--json")
	if inv.Jumpoint != "plant-a" || inv.Code == "" || !strings.Contains(inv.Run, "jumpmesh jumpoint run --data ") ||
		!strings.Contains(inv.Run, "--invite "+inv.Code) || !strings.Contains(inv.Run, coord.addr) {
		t.Fatalf("invite: %+v", inv)
	}
	var list []jumpointView
	ok(t, admin, &list, "jumpoint", "list", "--json")
	if len(list) != 1 || list[0].Name != "plant-a" || list[0].ID != "" || list[0].Online {
		t.Fatalf("list after the invite: %+v", list)
	}
	if text := ok(t, admin, nil, "jumpoint", "list").stdout; !strings.Contains(text, "invited") {
		t.Fatalf("list does not say invited:\n%s", text)
	}
	failCode(t, admin, "invalid_argument", "installer", "create", "--jumpoint", "plant-a")
	failCode(t, admin, "invalid_argument", "installer", "create", "--jumpoint", "no-such-jumpoint")

	// The jumpoint's key, enrolled with its code (here through login: the
	// daemon enrolls the same way), is listed but may do nothing a console does.
	jp := filepath.Join(dir, "plant-a")
	ok(t, jp, nil, "login", coord.addr, inv.Code)
	ok(t, admin, &list, "jumpoint", "list", "--json")
	if len(list) != 1 || !strings.HasPrefix(list[0].ID, "12D3KooW") || list[0].Online || list[0].PeersTotal != 0 {
		t.Fatalf("list after enrollment: %+v", list)
	}
	failCode(t, admin, "invalid_argument", "installer", "create", "--jumpoint", "plant-a") // never reported
	failCode(t, jp, "permission_denied", "ls")
	failCode(t, jp, "permission_denied", "jumpoint", "list")
	failCode(t, jp, "permission_denied", "installer", "create")
	failCode(t, admin, "invalid_argument", "user", "role", "plant-a", "admin")
}
