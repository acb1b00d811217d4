package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// runExec runs open to its end with stdin and returns the outputs.
func runExec(t *testing.T, p *channelPair, open *pb.ExecOpen, stdin io.Reader) (string, string, *pb.ExitStatus) {
	t.Helper()
	ch := p.open(t, execOpen(open))
	defer ch.Close()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: stdin, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatalf("exec %q: %v", open.GetArgv(), err)
	}
	return stdout.String(), stderr.String(), st
}

func TestExecKeepsStdoutAndStderrApartWithExitCode(t *testing.T) {
	p := newChannelPair(t)
	out, errOut, st := runExec(t, p, &pb.ExecOpen{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, nil)
	if out != "out\n" || errOut != "err\n" {
		t.Errorf("stdout %q, stderr %q; want \"out\\n\", \"err\\n\"", out, errOut)
	}
	if st.GetCode() != 3 || st.GetSignal() != "" || st.GetError() != "" {
		t.Errorf("status %v, want code 3", st)
	}
}

func TestExecStreamsStdin(t *testing.T) {
	p := newChannelPair(t)
	in := make([]byte, 1<<20)
	_, _ = rand.Read(in)

	out, _, st := runExec(t, p, &pb.ExecOpen{Argv: []string{"cat"}}, bytes.NewReader(in))
	if st.GetCode() != 0 || !bytes.Equal([]byte(out), in) {
		t.Errorf("cat returned %d bytes (equal: %v), status %v", len(out), bytes.Equal([]byte(out), in), st)
	}
	out, _, st = runExec(t, p, &pb.ExecOpen{Argv: []string{"wc", "-c"}}, bytes.NewReader(in))
	if strings.TrimSpace(out) != "1048576" || st.GetCode() != 0 {
		t.Errorf("wc -c says %q, status %v", out, st)
	}
}

func TestExecCommandNotFoundIs127(t *testing.T) {
	p := newChannelPair(t)
	_, errOut, st := runExec(t, p, &pb.ExecOpen{Argv: []string{"jumpmesh-no-such-command"}}, nil)
	if st.GetCode() != 127 || !strings.Contains(st.GetError(), "jumpmesh-no-such-command") {
		t.Errorf("status %v, want code 127 naming the command", st)
	}
	if errOut != "jumpmesh-no-such-command: command not found\n" {
		t.Errorf("stderr %q; want what a shell says", errOut)
	}
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, st = runExec(t, p, &pb.ExecOpen{Argv: []string{notExec}}, nil)
	if st.GetCode() != 126 || errOut != notExec+": Permission denied\n" {
		t.Errorf("a file that is not executable: status %v, stderr %q; want 126 and Permission denied", st, errOut)
	}
}

func TestExecSignalKillIsReported(t *testing.T) {
	p := newChannelPair(t)
	ch := p.open(t, execOpen(&pb.ExecOpen{Argv: []string{"sh", "-c", "echo ready; sleep 30"}}))
	defer ch.Close()
	var out syncBuffer
	signals := make(chan string, 1)
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	done := make(chan *pb.ExitStatus, 1)
	go func() {
		st, err := console.Exec(context.Background(), ch, console.ExecIO{Stdin: stdin, Stdout: &out, Signals: signals})
		if err != nil {
			t.Errorf("exec: %v", err)
		}
		done <- st
	}()
	out.waitFor(t, "ready")
	signals <- "KILL"
	select {
	case st := <-done:
		if st.GetSignal() != "KILL" || st.GetCode() != 128+9 {
			t.Errorf("status %v, want signal KILL, code 137", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the process survived KILL")
	}
}

// A background child that keeps stdout open must not hold the session
// open after the command itself exited: the peer drains output briefly,
// then reports the exit.
func TestExecBackgroundChildDoesNotHoldTheSession(t *testing.T) {
	p := newChannelPair(t)
	out, _, st := runExec(t, p, &pb.ExecOpen{Argv: []string{"sh", "-c", "sleep 4 & echo hi"}}, nil)
	if out != "hi\n" || st.GetCode() != 0 {
		t.Errorf("stdout %q, status %v", out, st)
	}
}

// A console that gives up (its context ends) resets the channel; the peer
// hangs up the process instead of leaving it running.
func TestExecCancelHangsUpTheProcess(t *testing.T) {
	p := newChannelPair(t)
	ch := p.open(t, execOpen(&pb.ExecOpen{Argv: []string{"sh", "-c", "echo ready; sleep 30"}}))
	defer ch.Close()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := console.Exec(ctx, ch, console.ExecIO{Stdout: &out})
		errc <- err
	}()
	out.waitFor(t, "ready")
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Exec after cancel: %v", err)
	}
	waitUntil(t, "the peer to end the process", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.exits) == 1
	})
	if st := p.exits[0]; st.GetSignal() != "HUP" {
		t.Errorf("peer-side status %v, want signal HUP", st)
	}
}

// shell is an interactive login shell in a PTY, driven as a user would.
type shell struct {
	t      *testing.T
	out    syncBuffer
	stdin  *io.PipeWriter
	resize chan *pb.WindowSize
	done   chan *pb.ExitStatus
}

func startShell(t *testing.T, p *channelPair) *shell {
	t.Helper()
	t.Setenv("SHELL", "/bin/sh") // the login shell the peer picks, whatever root's is here
	ch := p.open(t, execOpen(&pb.ExecOpen{Tty: true, Term: "xterm", Rows: 24, Cols: 80}))
	t.Cleanup(func() { _ = ch.Close() })
	stdin, stdinW := io.Pipe()
	s := &shell{t: t, stdin: stdinW, resize: make(chan *pb.WindowSize, 1), done: make(chan *pb.ExitStatus, 1)}
	t.Cleanup(func() { _ = stdinW.Close() })
	go func() {
		st, err := console.Exec(context.Background(), ch, console.ExecIO{Stdin: stdin, Stdout: &s.out, Resize: s.resize})
		if err != nil {
			t.Errorf("shell: %v", err)
		}
		s.done <- st
	}()
	return s
}

func (s *shell) send(input string) {
	if _, err := s.stdin.Write([]byte(input)); err != nil {
		s.t.Fatalf("typing %q: %v", input, err)
	}
}

func (s *shell) wait() *pb.ExitStatus {
	select {
	case st := <-s.done:
		return st
	case <-time.After(10 * time.Second):
		s.t.Fatalf("the shell did not end; output %q", s.out.String())
		return nil
	}
}

func TestShellInPTY(t *testing.T) {
	p := newChannelPair(t)
	sh := startShell(t, p)
	sh.send("echo $((6*7))\n")
	sh.out.waitFor(t, "42")
	sh.send("stty size\n")
	sh.out.waitFor(t, "24 80")
	sh.resize <- &pb.WindowSize{Rows: 50, Cols: 132}
	// The console's pump selects between the resize and the keystrokes:
	// when both are pending either may go first, so ask again until the
	// new size shows (the resize itself must arrive).
	waitUntil(t, `output showing "50 132"`, func() bool {
		if strings.Contains(sh.out.String(), "50 132") {
			return true
		}
		sh.send("stty size\n")
		return false
	})
	sh.send("tty\n")
	sh.out.waitFor(t, "/dev/pts/")
	sh.send("\x04") // Ctrl-D at the prompt
	if st := sh.wait(); st.GetCode() != 0 || st.GetSignal() != "" {
		t.Errorf("after Ctrl-D: status %v, want 0", st)
	}
}

func TestShellExitStatusPropagates(t *testing.T) {
	p := newChannelPair(t)
	sh := startShell(t, p)
	sh.send("exit 5\n")
	if st := sh.wait(); st.GetCode() != 5 {
		t.Errorf("status %v, want 5", st)
	}
}
