package main

import (
	"strings"
	"testing"
)

// TestHelpAndUnknownCommands: `help [CMD...]` works at every level, an
// unknown command is one line with the prefix once, and the offered list
// names no `help, h` command.
func TestHelpAndUnknownCommands(t *testing.T) {
	home := t.TempDir()
	for _, c := range []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"help"}, "jumpmesh - unattended remote access"},
		{[]string{"help", "jump"}, "jumpmesh jump - open a shell"},
		{[]string{"help", "user", "invite"}, "jumpmesh user invite - create a user"},
		{[]string{"user", "help", "invite"}, "jumpmesh user invite - create a user"},
		{[]string{"user", "help"}, "jumpmesh user - manage technicians"},
	} {
		r := jm(t, home, c.args...)
		if r.code != 0 || !strings.Contains(r.stdout, c.want) || r.stderr != "" {
			t.Errorf("jumpmesh %s: exit %d, stderr %q, stdout lacks %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"x"}, `jumpmesh: unknown command "x" (see jumpmesh --help)` + "\n"},
		{[]string{"h"}, `jumpmesh: unknown command "h" (see jumpmesh --help)` + "\n"},
		{[]string{"help", "nosuch"}, `jumpmesh: unknown command "nosuch" (see jumpmesh --help)` + "\n"},
		{[]string{"user", "x"}, `jumpmesh: unknown command "user x" (see jumpmesh user --help)` + "\n"},
	} {
		if r := jm(t, home, c.args...); r.code != exitUsage || r.stderr != c.want {
			t.Errorf("jumpmesh %s: exit %d, stderr %q; want exit 2, %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	r := jm(t, home, "--help")
	if strings.Contains(r.stdout, "help, h") {
		t.Errorf("the command list offers help, h:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "-v after jump or forward means verbose") {
		t.Errorf("--help does not say what -v means after jump:\n%s", r.stdout)
	}
}
