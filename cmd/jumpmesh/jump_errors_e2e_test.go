package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
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
	t.Run("SIGTERM ends a PTY session", func(t *testing.T) {
		for _, localTTY := range []bool{true, false} {
			cmd := exec.Command(binary, "jump", "web-01", "-t", "--", "sh", "-i")
			cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+s.admin, "TERM=xterm")
			var screen syncBuffer
			var in io.Writer
			if localTTY {
				tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
				if err != nil {
					t.Fatal(err)
				}
				defer tty.Close()
				go io.Copy(&screen, tty)
				in = tty
			} else { // as under timeout(1) in a script: no terminal here
				w, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				cmd.Stdout, cmd.Stderr, in = &screen, &screen, w
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			fmt.Fprintf(in, "echo rea''dy\r")
			waitFor(t, 20*time.Second, "the remote shell", func() bool { return strings.Contains(screen.String(), "ready") })
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+15 {
					t.Errorf("local tty %v: jump ended with %v; want exit 143", localTTY, err)
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("local tty %v: jump -t -- sh -i still runs 20 s after SIGTERM; screen %q", localTTY, screen.String())
			}
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
	t.Run("exec is not a shell (issue 11 #10)", func(t *testing.T) {
		var pol struct {
			AllowCommands []string `json:"allow_commands"`
		}
		ok(t, s.admin, &pol, "session-policy", "create", "monitoring", "--allow", "exec",
			"--allow-command", "echo allowed, really", "--allow-command", "uname *", "--json")
		if len(pol.AllowCommands) != 2 || pol.AllowCommands[0] != "echo allowed, really" {
			t.Fatalf("allow_commands %q", pol.AllowCommands)
		}
		ok(t, s.admin, nil, "set", "web-01", "--session-policy-present", "monitoring", "--session-policy-not-present", "monitoring")
		defer ok(t, s.admin, nil, "set", "web-01", "--session-policy-present", "", "--session-policy-not-present", "")
		if r := jm(t, s.admin, "jump", "web-01", "--", "echo", "allowed,", "really"); r.code != 0 || r.stdout != "allowed, really\n" {
			t.Errorf("a listed command: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
		for _, argv := range [][]string{{"cat", "/etc/passwd"}, {"-t", "--", "/bin/sh", "-i"}, {"-t", "--", "echo", "allowed,", "really"}} {
			r := jm(t, s.admin, append([]string{"jump", "web-01"}, argv...)...)
			if r.code != exitJumpFailed || !strings.Contains(r.stderr, "does not allow") {
				t.Errorf("jump web-01 %q: exit %d, stderr %q; want 255 and a refusal", argv, r.code, r.stderr)
			}
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
