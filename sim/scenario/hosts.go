package scenario

// The hosts' processes: the coordinator and relay daemons, peers' installs
// and init-scripts, waiting for a peer's state, stopping, killing and
// starting them again.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// init creates the site on the coordinator host, runs the coordinator and
// logs the console in as the first administrator.
func (r *runner) init(ctx context.Context) (string, error) {
	ch := r.hostOf(RoleCoordinator)
	a := r.lab.Host(ch).Addr().String()
	var in struct{ Invite string }
	res, err := r.jm(ctx, ch, &in, "coordinator", "init", "--data", filepath.Join(r.hostDir(ch), "site"),
		"--listen", "/ip4/"+a+"/tcp/"+coordinatorPort, "--listen", "/ip4/"+a+"/udp/"+coordinatorPort+"/quic-v1",
		"--http-addr", "off", "--json")
	if err != nil {
		return res.output(), err
	}
	out := ""
	if r.hasEtcd() {
		// The site moves to the cluster; every coordinator host runs it.
		if out, err = r.startEtcd(ctx, ch); err != nil {
			return out, err
		}
	}
	// On etcd the other coordinator hosts start with "start NAME" steps
	// (after the relays: relay in ha.go).
	if err := r.startCoordinator(ctx, ch); err != nil {
		return out, err
	}
	first := r.hostOf(RoleConsole)
	res, err = r.jm(ctx, first, nil, "login", r.coordAddr, in.Invite)
	out += "coordinator " + r.coordAddr + "\n" + res.output()
	// Every other console is another device of the same administrator.
	for _, h := range r.sc.Hosts {
		if err != nil || h.Role != RoleConsole || h.Name == first {
			continue
		}
		var inv struct{ Code string }
		if res, err = r.jm(ctx, first, &inv, "user", "invite", "admin", "--valid-for", "1h", "--json"); err == nil {
			res, err = r.jm(ctx, h.Name, nil, "login", r.coordAddr, inv.Code)
		}
		out += "\n" + h.Name + ": " + res.output()
	}
	return out, err
}

// startCoordinator runs the coordinator on host ch; the first coordinator
// host's login address is the one consoles, relays and installer keys get.
// On etcd (ha.go) each runs the site on the cluster, on its own address,
// as the instance named after its host.
func (r *runner) startCoordinator(ctx context.Context, ch string) error {
	args := []string{"coordinator", "run", "--data", filepath.Join(r.hostDir(ch), "site")}
	if r.etcd != nil {
		a := r.lab.Host(ch).Addr().String()
		args = append(args, "--store", r.etcd.URL(),
			"--listen", "/ip4/"+a+"/tcp/"+coordinatorPort, "--listen", "/ip4/"+a+"/udp/"+coordinatorPort+"/quic-v1")
	}
	p, addr, err := r.startDaemon(ctx, ch, "coordinator", args...)
	if p != nil {
		r.coords[ch] = p // teardown stops it, ready or not
	}
	if ch == r.hostOf(RoleCoordinator) && addr != "" {
		r.coordAddr = addr
	}
	return err
}

// startRelay enrolls a relay with an invite from the console and runs it.
func (r *runner) startRelay(ctx context.Context, name string) (string, error) {
	var inv struct{ Code string }
	res, err := r.jm(ctx, r.hostOf(RoleConsole), &inv, "relay", "invite", name, "--json")
	if err != nil {
		return res.output(), err
	}
	return r.runRelay(ctx, name, inv.Code)
}

// runRelay runs the relay daemon on host name; invite is for the first run.
func (r *runner) runRelay(ctx context.Context, name, invite string) (string, error) {
	a := r.lab.Host(name).Addr().String()
	args := []string{"relay", "run", "--data", filepath.Join(r.hostDir(name), "relay"),
		"--coordinator", r.coordAddr, "--listen", "/ip4/" + a + "/tcp/" + relayPort,
		"--listen", "/ip4/" + a + "/udp/" + relayPort + "/quic-v1", "--http-addr", relayHTTPAddr}
	if invite != "" {
		args = append(args, "--invite", invite)
	}
	p, addr, err := r.startDaemon(ctx, name, "relay", args...)
	if p != nil {
		r.daemons[name] = p // teardown stops it, ready or not
	}
	if err != nil {
		return "", err
	}
	return "relay " + addr, nil
}

// relayPort is where scenario relays listen.
const relayPort = "4832"

// startDaemon runs a jumpmesh daemon (coordinator run, relay run) on host,
// logging to hosts/HOST/NAME.log, and waits for its "ready" line. It
// returns the first TCP address the daemon says it listens on.
func (r *runner) startDaemon(ctx context.Context, host, name string, args ...string) (*coordProc, string, error) {
	h := r.lab.Host(host)
	logf, err := os.OpenFile(filepath.Join(r.hostDir(host), name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, "", err
	}
	// Not tied to ctx: the daemon outlives steps; teardown stops it.
	cmd := h.Command(context.Background(), r.bin, args...)
	cmd.Env = r.env(host)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, "", err
	}
	p, err := h.Start(cmd)
	if err != nil {
		logf.Close()
		return nil, "", err
	}
	dp := &coordProc{proc: p, log: logf}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		addr := ""
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			switch {
			case strings.HasPrefix(line, "listening ") && strings.Contains(line, "/tcp/") && addr == "":
				addr = strings.TrimPrefix(line, "listening ")
			case line == "ready":
				ready <- addr
			}
		}
		io.Copy(logf, stdout)
	}()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case addr := <-ready:
		if addr == "" {
			return dp, "", fmt.Errorf("%s printed no TCP listening address", name)
		}
		return dp, addr, nil
	case <-p.Done():
		return dp, "", fmt.Errorf("%s exited before it was ready: %v (see %s)", name, p.Wait(), logf.Name())
	case <-t.C:
		return dp, "", fmt.Errorf("%s not ready after %v (see %s)", name, readyTimeout, logf.Name())
	case <-ctx.Done():
		return dp, "", ctx.Err()
	}
}

// install creates an installer key on the console, installs the peer on
// its host and starts it with the install directory's init-script.
func (r *runner) install(ctx context.Context, name string) (string, error) {
	var key struct{ Key string }
	args := []string{"installer", "create", "--name", name, "--valid-for", "1h", "--json"}
	for _, h := range r.sc.Hosts {
		if h.Name == name {
			args = append(args, h.Installer...)
		}
	}
	res, err := r.jm(ctx, r.hostOf(RoleConsole), &key, args...)
	if err != nil {
		return res.output(), err
	}
	dir := filepath.Join(r.hostDir(name), "jumpmesh")
	res, err = r.jm(ctx, name, nil, "peer", "install", "--key", key.Key, "--install-dir", dir, "--user", "root", "--json")
	if err != nil {
		return res.output(), err
	}
	r.peers[name] = dir
	return r.initScript(ctx, name, "start")
}

func (r *runner) initScript(ctx context.Context, name, action string) (string, error) {
	res, err := r.command(ctx, name, filepath.Join(r.peers[name], "init-script"), action)
	if err == nil && res.code != 0 {
		err = fmt.Errorf("init-script %s: exit %d: %s", action, res.code, lastLine(res.output()))
	}
	return res.output(), err
}

// peerStatus is the peer's status as the console's `ls` shows it, or "".
func (r *runner) peerStatus(ctx context.Context, name string) (string, error) {
	var peers []struct{ Name, Status string }
	res, err := r.jm(ctx, r.hostOf(RoleConsole), &peers, "ls", "name:"+name, "--deleted", "--json")
	if err != nil {
		return "", fmt.Errorf("%v %s", err, res.stderr)
	}
	for _, p := range peers {
		if p.Name == name {
			return p.Status, nil
		}
	}
	return "", nil
}

func (r *runner) expectStatus(ctx context.Context, name, want string, within time.Duration) (string, error) {
	within = cmp.Or(within, defaultWithin)
	var last string
	var lastErr error
	if poll(ctx, within, func(ctx context.Context) bool {
		last, lastErr = r.peerStatus(ctx, name)
		return lastErr == nil && last == want
	}) {
		return name + " " + last, nil
	}
	if lastErr != nil {
		return "", fmt.Errorf("%s not %s within %v: %v", name, want, within, lastErr)
	}
	if last == "" {
		last = "not listed"
	}
	return "", fmt.Errorf("%s not %s within %v (last: %s)", name, want, within, last)
}

// expectRelay waits until the peer says (peer status) it holds a
// reservation on a relay: before that, a console behind a NAT cannot
// reach it.
func (r *runner) expectRelay(ctx context.Context, name string, within time.Duration) (string, error) {
	within = cmp.Or(within, defaultWithin)
	var held []string
	var res cmdResult
	if poll(ctx, within, func(ctx context.Context) bool {
		var st struct{ Relays []string }
		var err error
		res, err = r.jm(ctx, name, &st, "peer", "status", "--dir", r.peers[name], "--json")
		held = st.Relays
		return err == nil && len(held) > 0
	}) {
		return name + " holds a reservation on " + strings.Join(held, ", "), nil
	}
	return res.output(), fmt.Errorf("%s holds no relay reservation after %v", name, within)
}

// poll calls check every pollEvery until it says yes or within has passed,
// and reports whether it said yes.
func poll(ctx context.Context, within time.Duration, check func(context.Context) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		if check(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// startBackground runs fn while the next steps do; "wait NAME" collects it.
func (r *runner) startBackground(ctx context.Context, name string, fn func() (string, error)) (string, error) {
	if r.background == nil {
		r.background = map[string]chan stepOutcome{}
	}
	done := make(chan stepOutcome, 1)
	r.background[name] = done
	r.bgWG.Go(func() {
		out, err := fn()
		done <- stepOutcome{out, err}
	})
	return "running in the background as " + name, nil
}

func (r *runner) lifecycle(ctx context.Context, action, name string) (string, error) {
	if role := r.role(name); role == RoleRelay || role == RoleJumpoint {
		return r.daemonLifecycle(ctx, action, name)
	}
	if r.role(name) == RoleEtcd {
		return r.etcdLifecycle(ctx, action, name)
	}
	if r.role(name) == RoleCoordinator {
		switch action {
		case "start":
			if c := r.coords[name]; c != nil {
				select {
				case <-c.proc.Done():
					c.log.Close()
				default:
					return "", fmt.Errorf("coordinator %s is already running", name)
				}
			}
			return "", r.startCoordinator(ctx, name)
		case "stop":
			return "", r.stopCoordinator(name, stopGrace)
		default:
			return "", r.stopCoordinator(name, 0)
		}
	}
	if _, ok := r.peers[name]; !ok {
		return "", fmt.Errorf("%s is not installed", name)
	}
	if action != "kill" {
		return r.initScript(ctx, name, action)
	}
	pid, err := r.peerPID(name)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("killed pid %d", pid), r.killInHost(name, pid)
}

// daemonLifecycle stops (SIGTERM), kills (SIGKILL) or starts again a relay
// or a jumpoint (a restart needs no invite: it keeps its enrollment).
func (r *runner) daemonLifecycle(ctx context.Context, action, name string) (string, error) {
	p := r.daemons[name]
	running := false
	if p != nil {
		select {
		case <-p.proc.Done():
		default:
			running = true
		}
	}
	switch {
	case action == "start" && running:
		return "", fmt.Errorf("%s is already running", name)
	case action == "start":
		if p != nil {
			p.log.Close()
		}
		if r.role(name) == RoleJumpoint {
			return r.runJumpoint(ctx, name, "")
		}
		return r.runRelay(ctx, name, "")
	case !running:
		return "", fmt.Errorf("%s is not running", name)
	case action == "stop":
		return "", p.proc.Stop(stopGrace)
	}
	p.proc.Signal(syscall.SIGKILL)
	select {
	case <-p.proc.Done():
		r.killed = append(r.killed, killed{name: name, at: time.Now()})
		return "killed " + name, nil
	case <-time.After(stopGrace):
		return "", fmt.Errorf("%s survived SIGKILL", name)
	}
}

func (r *runner) stopCoordinator(name string, grace time.Duration) error {
	c := r.coords[name]
	if c == nil {
		return fmt.Errorf("coordinator %s is not running", name)
	}
	var err error
	if grace > 0 {
		err = c.proc.Stop(grace)
	} else {
		c.proc.Signal(syscall.SIGKILL)
		select {
		case <-c.proc.Done():
		case <-time.After(stopGrace):
			err = fmt.Errorf("coordinator %s survived SIGKILL", name)
		}
	}
	return err
}

func (r *runner) peerPID(name string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(r.peers[name], "run", "peer.pid"))
	if err != nil {
		return 0, fmt.Errorf("%s: no pid file: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: bad pid file %q", name, raw)
	}
	return pid, nil
}

// killInHost kills pid with SIGKILL if, and only if, it runs in host's
// namespace: the process is pinned with a pidfd first, so the check and
// the signal are about the same process. It waits until the process is gone.
func (r *runner) killInHost(host string, pid int) error {
	p, err := os.FindProcess(pid) // a pidfd on Linux
	if err != nil {
		return nil
	}
	defer p.Release()
	var want string
	if err := r.lab.Host(host).Do(func() (err error) {
		want, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		return err
	}
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil // gone already
	}
	if got != want {
		return fmt.Errorf("pid %d is not in %s's namespace; not killing it", pid, host)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(stopGrace)
	for time.Now().Before(deadline) {
		if p.Signal(syscall.Signal(0)) != nil || zombie(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pid %d on %s still running after SIGKILL", pid, host)
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
