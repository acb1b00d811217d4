package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// procKillWait bounds how long teardown waits for a killed process.
const procKillWait = 5 * time.Second

// pdeathsig is sent to a lab process when the thread that started it dies,
// so a lab killed with SIGKILL does not leave its processes running. Tests
// of Clean turn it off to leave a process behind on purpose.
var pdeathsig = syscall.SIGKILL

// Proc is a process running inside a host's namespace.
type Proc struct {
	host *Host
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Command returns an exec.Cmd for name on this host; start it with Start.
// ctx kills the process when done, as with exec.CommandContext.
func (h *Host) Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, arg...)
}

// Start starts cmd inside the host's namespace and tracks it: the lab kills
// it by PID at teardown if it is still running. The process is forked from a
// thread inside the namespace, so it needs no helper binary; `ip netns exec
// h.Netns() ...` is the shell equivalent.
func (h *Host) Start(cmd *exec.Cmd) (*Proc, error) {
	l := h.lab
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.mu.Unlock()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = pdeathsig
	}
	cmd.Env = append(envOrDefault(cmd.Env), "JMLAB_HOST="+h.name, "JMLAB_NETNS="+h.ns.name)
	if err := h.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("starting %s on %s: %w", cmd.Path, h.name, err)
	}
	p := &Proc{host: h, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		l.mu.Lock()
		delete(l.procs, p)
		l.mu.Unlock()
		close(p.done)
	}()
	l.mu.Lock()
	if l.closed {
		// Close ran while we forked: do its job for this one.
		l.mu.Unlock()
		return nil, errors.Join(ErrClosed, p.kill(procKillWait))
	}
	l.procs[p] = struct{}{}
	l.mu.Unlock()
	return p, nil
}

func envOrDefault(env []string) []string {
	if env == nil {
		return os.Environ()
	}
	return env
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns what exec.Cmd.Wait
// returned.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process. os.Process uses a pidfd, so a process
// that has already been reaped is never confused with a new one.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop asks the process to exit with SIGTERM and kills it after grace.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return p.kill(procKillWait)
	}
}

// kill sends SIGKILL and waits up to wait for the process to be reaped.
func (p *Proc) kill(wait time.Duration) error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing pid %d on %s: %w", p.PID(), p.host.name, err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("pid %d on %s still running %v after SIGKILL", p.PID(), p.host.name, wait)
	}
}
