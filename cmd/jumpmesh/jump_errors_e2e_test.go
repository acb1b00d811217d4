package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewcomerErrorsThroughTheCLI: the errors a newcomer met say what a
// shell or cp would, through the real binary and a real peer (issue 10).
func TestNewcomerErrorsThroughTheCLI(t *testing.T) {
	s := newJumpSite(t)

	t.Run("command not found", func(t *testing.T) {
		r := jm(t, s.admin, "jump", "web-01", "--", "nosuchcmd", "arg")
		if r.code != 127 || r.stderr != "nosuchcmd: command not found\n" || r.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 127 and what a shell says", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		notExec := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := jm(t, s.admin, "jump", "web-01", "--", notExec)
		if r.code != 126 || r.stderr != notExec+": Permission denied\n" {
			t.Errorf("exit %d, stderr %q; want 126 and Permission denied", r.code, r.stderr)
		}
	})
	t.Run("cp of a missing remote path", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "x")
		missing := filepath.Join(s.dir, "no-such-remote-file")
		failCode(t, s.admin, "copy_not_found", "cp", "web-01:"+missing, dst)
		if r := jm(t, s.admin, "cp", "web-01:"+missing, dst); !strings.Contains(r.stderr, "does not exist") || !strings.Contains(r.stderr, missing) {
			t.Errorf("stderr %q; want the path and 'does not exist'", r.stderr)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Error("the target was created")
		}
	})
	t.Run("cp of a missing local path", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-local-file")
		failCode(t, s.admin, "copy_not_found", "cp", missing, "web-01:"+s.dir+"/")
		if r := jm(t, s.admin, "cp", missing, "web-01:"+s.dir+"/"); !strings.Contains(r.stderr, missing) {
			t.Errorf("stderr %q; want the path", r.stderr)
		}
	})
}
