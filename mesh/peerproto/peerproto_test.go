package peerproto_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

func TestCommandAllowed(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		argv     []string
		want     bool
	}{
		{nil, []string{"anything"}, true},
		{[]string{"uptime"}, []string{"uptime"}, true},
		{[]string{"uptime"}, []string{"uptime", "-p"}, false},
		{[]string{"uptime"}, []string{"/usr/bin/uptime"}, false},
		{[]string{"uptime"}, nil, false},
		{[]string{"systemctl status *"}, []string{"systemctl", "status", "nginx"}, true},
		{[]string{"systemctl status *"}, []string{"systemctl", "restart", "nginx"}, false},
		{[]string{"systemctl status *"}, []string{"systemctl", "status"}, false},
		{[]string{"* --version"}, []string{"go", "--version"}, true},
		{[]string{"tail -n * /var/log/*.log"}, []string{"tail", "-n", "5", "/var/log/syslog.log"}, true},
		{[]string{"tail -n * /var/log/*.log"}, []string{"tail", "-n", "5", "/etc/shadow"}, false},
		{[]string{"a*a"}, []string{"a"}, false},
		{[]string{"df -h", "uptime"}, []string{"uptime"}, true},
	} {
		if got := peerproto.CommandAllowed(c.patterns, c.argv); got != c.want {
			t.Errorf("CommandAllowed(%q, %q) = %v, want %v", c.patterns, c.argv, got, c.want)
		}
	}
}

func TestValidateAllowCommands(t *testing.T) {
	for name, p := range map[string]*pb.SessionPolicy{
		"without exec":  {Name: "p", Shell: true, AllowCommands: []string{"uptime"}},
		"empty pattern": {Name: "p", Exec: true, AllowCommands: []string{" "}},
		"control char":  {Name: "p", Exec: true, AllowCommands: []string{"ls\n"}},
	} {
		if err := coordinator.ValidateSessionPolicy(p); err == nil {
			t.Errorf("%s: accepted %q", name, p.GetAllowCommands())
		}
	}
	if err := coordinator.ValidateSessionPolicy(&pb.SessionPolicy{Name: "p", Exec: true, AllowCommands: []string{"uptime", "df -h"}}); err != nil {
		t.Errorf("a valid list: %v", err)
	}
}
