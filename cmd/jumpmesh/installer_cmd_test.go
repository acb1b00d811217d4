package main

import (
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallerCreatePrintsACommandThatWorksAsRoot runs the printed install
// command: unchanged it fails on the placeholder (nothing installed); with
// the placeholder changed to a real account it installs, as root too.
func TestInstallerCreatePrintsACommandThatWorksAsRoot(t *testing.T) {
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	var in struct {
		Key           string
		Command       string `json:"install_command"`
		CommandAsUser string `json:"install_command_as_user"`
	}
	ok(t, admin, &in, "installer", "create", "--valid-for", "1h", "--json")
	if !strings.Contains(in.Command, "--user "+installUserPlaceholder) || strings.Contains(in.CommandAsUser, "--user") ||
		!strings.Contains(in.CommandAsUser, in.Key) {
		t.Fatalf("install commands: root %q, as user %q", in.Command, in.CommandAsUser)
	}
	text := jm(t, admin, "installer", "show", installerID(t, admin)).stdout
	if !strings.Contains(text, in.Command) || !strings.Contains(text, in.CommandAsUser) || !strings.Contains(text, "change "+installUserPlaceholder) {
		t.Fatalf("installer show does not print both install lines:\n%s", text)
	}

	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(dir, "host")
	args := strings.Fields(in.Command)
	if args[0] != "jumpmesh" {
		t.Fatalf("install command %q", in.Command)
	}
	args = args[1:]
	for i := range args {
		if i > 0 && args[i-1] == "--install-dir" {
			args[i] = hostDir
		}
	}
	if r := jm(t, dir, args...); r.code == 0 || !strings.Contains(r.stderr, "--user "+installUserPlaceholder+": no such user") {
		t.Fatalf("the placeholder left unchanged: exit %d, %q", r.code, r.stderr)
	}
	for i := range args {
		if args[i] == installUserPlaceholder {
			args[i] = me.Username
		}
	}
	ok(t, dir, nil, args...)
}

// installerID is the ID of the site's only installer.
func installerID(t *testing.T, home string) string {
	t.Helper()
	var list []struct{ ID string }
	ok(t, home, &list, "installer", "list", "--json")
	if len(list) != 1 {
		t.Fatalf("installers: %v", list)
	}
	return list[0].ID
}
