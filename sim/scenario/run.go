package scenario

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/sim/netlab"
)

// Timeouts. The machine may be small and busy: generous, but bounded.
const (
	commandTimeout   = 60 * time.Second // one CLI invocation
	readyTimeout     = 30 * time.Second // coordinator run until "ready"
	defaultWithin    = 30 * time.Second // expect-status without "within"
	stopGrace        = 10 * time.Second
	pollEvery        = 500 * time.Millisecond
	coordinatorPort  = "4830"
	maxOutputExcerpt = 2000
)

// Options configure a run.
type Options struct {
	// Binary is the jumpmesh binary every host runs (required).
	Binary string
	// OutDir receives results.json and a directory per host (data dirs,
	// console homes, logs). It is created if missing.
	OutDir string
	// Logger receives the lab's build and teardown events; nil discards.
	Logger *slog.Logger
	// Progress, if set, is called when each step ends.
	Progress func(StepResult)
	// Pcap captures every host's interface, both directions, into
	// hosts/HOST/HOST.pcap for the whole run.
	Pcap bool
}

// Results is what results.json holds.
type Results struct {
	Scenario   string          `json:"scenario"`
	Lab        string          `json:"lab"`
	Started    time.Time       `json:"started"`
	DurationMS float64         `json:"duration_ms"`
	OK         bool            `json:"ok"`
	Error      string          `json:"error,omitempty"`
	Networks   []NetworkResult `json:"networks,omitempty"`
	Hosts      []HostResult    `json:"hosts"`
	Steps      []StepResult    `json:"steps"`
	// Paths holds what each connect step measured (a grid's cells).
	Paths []PathResult `json:"paths,omitempty"`
	// Grid describes the grid a `sim grid` run was made from.
	Grid *GridInfo `json:"grid,omitempty"`
}

// NetworkResult describes a network of the run.
type NetworkResult struct {
	Name   string `json:"name"`
	NAT    string `json:"nat"`
	Subnet string `json:"subnet,omitempty"`
	Public string `json:"public_addr,omitempty"` // the NAT's public side
}

// PathResult is one connect step's measurement: how a console reached a
// peer, and whether hole punching made the path direct.
type PathResult struct {
	Run        int    `json:"run"` // repetition, from 1
	Console    string `json:"console"`
	Peer       string `json:"peer"`
	ConsoleNAT string `json:"console_nat"` // NAT preset of the console's network
	PeerNAT    string `json:"peer_nat"`
	OK         bool   `json:"ok"` // connected at all (directly or relayed)
	Error      string `json:"error,omitempty"`
	Initial    string `json:"initial,omitempty"`    // "direct" or "relayed": the first connection
	Final      string `json:"final,omitempty"`      // "direct" or "relayed": at the end of the wait
	FinalAddr  string `json:"final_addr,omitempty"` // the peer's address on the final path
	Transport  string `json:"transport,omitempty"`  // "tcp" or "quic" when the final path is direct
	// ConnectMS is the time to the first connection; TimeToDirectMS the
	// time from the relayed connection to the direct one (0: none).
	ConnectMS      float64 `json:"connect_ms"`
	TimeToDirectMS float64 `json:"time_to_direct_ms,omitempty"`
	// RTTMS is the median ping round trip on the final path; RelayRTTMS the
	// round trip through the relay that the lab's link latencies imply
	// (the basis of the time-to-direct target).
	RTTMS      float64 `json:"rtt_ms,omitempty"`
	RelayRTTMS float64 `json:"relay_rtt_ms,omitempty"`
}

// GridInfo describes a NAT grid run: every console preset against every
// peer preset, Runs times.
type GridInfo struct {
	Presets   []string `json:"presets"`
	Runs      int      `json:"runs"`
	LatencyMS float64  `json:"latency_ms"` // one-way, on each NAT's uplink
	WaitMS    float64  `json:"wait_ms"`    // how long a relayed pair may take to go direct
}

// HostResult describes a host of the run.
type HostResult struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	Role    string `json:"role"`
	Addr    string `json:"addr"`
	Public  string `json:"public_addr,omitempty"` // the NAT's public side
	Dir     string `json:"dir"`
}

// StepResult is one step's outcome.
type StepResult struct {
	Index      int       `json:"index"`
	Name       string    `json:"name"`
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"duration_ms"`
	OK         bool      `json:"ok"`
	Skipped    bool      `json:"skipped,omitempty"`
	Error      string    `json:"error,omitempty"`
	Output     string    `json:"output,omitempty"`
}

// Duration is the step's duration.
func (s StepResult) Duration() time.Duration {
	return time.Duration(s.DurationMS * float64(time.Millisecond))
}

// ResultsFile is the name of the results file in the output directory.
const ResultsFile = "results.json"

// Run builds the scenario's lab, runs its steps in order (stopping at the
// first failure; the rest are reported as skipped), tears everything down
// and writes results.json into opt.OutDir. A failed step makes Results.OK
// false; the error is for runs that could not happen at all (no root, bad
// options, a lab that could not be built) or could not be cleaned up.
func Run(ctx context.Context, sc *Scenario, opt Options) (res *Results, err error) {
	if opt.Binary == "" {
		return nil, errors.New("scenario: no jumpmesh binary")
	}
	bin, err := filepath.Abs(opt.Binary)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("scenario: %s is not an executable file", bin)
	}
	out, err := filepath.Abs(opt.OutDir)
	if err != nil {
		return nil, err
	}
	if err := netlab.Available(); err != nil {
		return nil, err
	}
	// A run's hosts keep state (a site, peers' installs): a second run in
	// the same directory would trip over the first's.
	if entries, err := os.ReadDir(filepath.Join(out, "hosts")); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("scenario: %s holds an earlier run; choose another output directory or remove it", out)
	}
	if err := os.MkdirAll(filepath.Join(out, "hosts"), 0o755); err != nil {
		return nil, err
	}
	topo, err := sc.Topology()
	if err != nil {
		return nil, err
	}
	res = &Results{Scenario: sc.Name, Started: time.Now().UTC(), Steps: []StepResult{}}
	defer func() {
		res.DurationMS = ms(time.Since(res.Started))
		if werr := writeResults(filepath.Join(out, ResultsFile), res); werr != nil && err == nil {
			err = werr
		}
	}()
	lab, err := netlab.New(ctx, topo, netlab.Config{Logger: opt.Logger})
	if err != nil {
		res.Error = err.Error()
		return res, err
	}
	r := &runner{sc: sc, lab: lab, bin: bin, out: out, peers: map[string]string{}, res: res}
	res.Lab = lab.Prefix()
	for _, n := range sc.Networks {
		nr := NetworkResult{Name: n.Name, NAT: string(n.NAT)}
		if ln := lab.Network(n.Name); ln != nil {
			if pa := ln.PublicAddr(); pa.IsValid() {
				nr.Public = pa.String()
			}
			if sub := ln.Subnet(); sub.IsValid() {
				nr.Subnet = sub.String()
			}
		}
		res.Networks = append(res.Networks, nr)
	}
	for _, h := range sc.Hosts {
		lh := lab.Host(h.Name)
		hr := HostResult{Name: h.Name, Network: h.Network, Role: h.Role, Addr: lh.Addr().String(), Dir: r.hostDir(h.Name)}
		if pa := lh.Network().PublicAddr(); pa.IsValid() {
			hr.Public = pa.String()
		}
		res.Hosts = append(res.Hosts, hr)
		if err := os.MkdirAll(r.hostDir(h.Name), 0o755); err != nil {
			lab.Close()
			return res, err
		}
		if opt.Pcap {
			// The lab closes (and flushes) the capture at teardown.
			if _, err := lh.Capture(filepath.Join(r.hostDir(h.Name), h.Name+".pcap")); err != nil {
				lab.Close()
				return res, err
			}
		}
	}
	defer func() {
		if cerr := r.teardown(); cerr != nil {
			res.Error = strings.TrimSpace(res.Error + "\nteardown: " + cerr.Error())
			res.OK = false
			err = errors.Join(err, cerr)
		}
	}()

	res.OK = true
	for i, st := range sc.Steps {
		sr := StepResult{Index: i + 1, Name: st.Name(), Start: time.Now().UTC()}
		if !res.OK || ctx.Err() != nil {
			sr.Skipped = true
			if ctx.Err() != nil && res.OK {
				sr.Error = ctx.Err().Error()
				res.OK = false
			}
		} else {
			t0 := time.Now()
			output, serr := r.step(ctx, st)
			sr.DurationMS = ms(time.Since(t0))
			sr.Output = excerpt(output)
			sr.OK = serr == nil
			if serr != nil {
				sr.Error = serr.Error()
				res.OK = false
				res.Error = fmt.Sprintf("step %d (%s) failed", i+1, st.Name())
			}
		}
		res.Steps = append(res.Steps, sr)
		if opt.Progress != nil {
			opt.Progress(sr)
		}
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func excerpt(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxOutputExcerpt {
		s = s[:maxOutputExcerpt] + "\n…"
	}
	return s
}

func writeResults(path string, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// runner is one run's state.
type runner struct {
	sc  *Scenario
	lab *netlab.Lab
	bin string
	out string

	coord     *coordProc
	relays    map[string]*coordProc
	coordAddr string            // the /tcp/ login address
	peers     map[string]string // peer name → install dir

	res   *Results   // Paths grows as connect and grid steps measure
	resMu sync.Mutex // guards res.Paths (a grid's consoles run at once)

	background map[string]chan stepOutcome // background execs by name
	bgWG       sync.WaitGroup
}

// stepOutcome is a finished background exec.
type stepOutcome struct {
	out string
	err error
}

type coordProc struct {
	proc *netlab.Proc
	log  *os.File
}

func (r *runner) hostDir(name string) string { return filepath.Join(r.out, "hosts", name) }
func (r *runner) home(name string) string    { return filepath.Join(r.hostDir(name), "home") }

func (r *runner) hostOf(role string) string {
	for _, h := range r.sc.Hosts {
		if h.Role == role {
			return h.Name
		}
	}
	return ""
}

func (r *runner) role(name string) string {
	for _, h := range r.sc.Hosts {
		if h.Name == name {
			return h.Role
		}
	}
	return ""
}

// cmdResult is one finished command.
type cmdResult struct {
	stdout, stderr string
	code           int
}

func (c cmdResult) output() string {
	if c.stderr == "" {
		return c.stdout
	}
	return c.stdout + "\n" + c.stderr
}

// command runs name args... on host with JUMPMESH_HOME set to the host's
// console home, and appends it to the host's commands.log.
func (r *runner) command(ctx context.Context, host, name string, args ...string) (cmdResult, error) {
	h := r.lab.Host(host)
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := h.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+r.home(host), mesh.LabPublicRangesEnv+"=1")
	cmd.Dir = r.hostDir(host)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	// A daemon started by an init script may hold the pipes for a moment.
	cmd.WaitDelay = 5 * time.Second
	p, err := h.Start(cmd)
	if err != nil {
		return cmdResult{}, err
	}
	werr := p.Wait()
	res := cmdResult{stdout: so.String(), stderr: se.String(), code: cmd.ProcessState.ExitCode()}
	r.logCommand(host, name, args, res)
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s %s: timed out after %v", filepath.Base(name), strings.Join(args, " "), commandTimeout)
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) && !errors.Is(werr, exec.ErrWaitDelay) {
		return res, werr
	}
	return res, nil
}

func (r *runner) logCommand(host, name string, args []string, res cmdResult) {
	f, err := os.OpenFile(filepath.Join(r.hostDir(host), "commands.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s $ %s %s\nexit %d\n%s", time.Now().UTC().Format(time.RFC3339Nano), name, strings.Join(args, " "), res.code, res.stdout)
	if res.stderr != "" {
		fmt.Fprintf(f, "stderr:\n%s", res.stderr)
	}
	fmt.Fprintln(f)
}

// jm runs the jumpmesh binary on host; it fails unless the exit code is 0.
func (r *runner) jm(ctx context.Context, host string, v any, args ...string) (cmdResult, error) {
	res, err := r.command(ctx, host, r.bin, args...)
	if err != nil {
		return res, err
	}
	if res.code != 0 {
		return res, fmt.Errorf("jumpmesh %s on %s: exit %d: %s", strings.Join(args, " "), host, res.code, res.failure())
	}
	if v != nil {
		if err := json.Unmarshal([]byte(res.stdout), v); err != nil {
			return res, fmt.Errorf("jumpmesh %s on %s: output is not JSON: %v", strings.Join(args, " "), host, err)
		}
	}
	return res, nil
}

// failure is what a failed command said: the catalog code and message of
// a --json error, else its last line of output.
func (c cmdResult) failure() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal([]byte(c.stdout), &e) == nil && e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	return lastLine(c.stderr + c.stdout)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

var varRE = regexp.MustCompile(`\$\{([a-z0-9-]+)\.(addr|public)\}`)

// expand replaces ${HOST.addr} (a host's address) and ${HOST.public} or
// ${NETWORK.public} (the public address of the host's or network's NAT).
func (r *runner) expand(s string) (string, error) {
	var bad error
	s = varRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		if h := r.lab.Host(sub[1]); h != nil {
			if sub[2] == "addr" {
				return h.Addr().String()
			}
			if pa := h.Network().PublicAddr(); pa.IsValid() {
				return pa.String()
			}
			return h.Addr().String()
		}
		if n := r.lab.Network(sub[1]); n != nil && sub[2] == "public" && n.PublicAddr().IsValid() {
			return n.PublicAddr().String()
		}
		bad = fmt.Errorf("%s: no such host or network address", m)
		return m
	})
	return s, bad
}

// step runs one step and returns its output excerpt.
func (r *runner) step(ctx context.Context, st Step) (string, error) {
	args := make([]string, len(st.Args))
	for i, a := range st.Args {
		var err error
		if args[i], err = r.expand(a); err != nil {
			return "", err
		}
	}
	expect, err := r.expand(st.ExpectStdout)
	if err != nil {
		return "", err
	}
	console := r.hostOf(RoleConsole)
	if st.From != "" {
		console = st.From
	}
	switch st.Action {
	case "init":
		return r.init(ctx)
	case "install":
		return r.install(ctx, args[0])
	case "expect-status":
		return r.expectStatus(ctx, args[0], args[1], st.Within)
	case "exec":
		if st.Background != "" {
			return r.startBackground(ctx, st.Background, func() (string, error) { return r.exec(ctx, console, args, st, expect) })
		}
		return r.exec(ctx, console, args, st, expect)
	case "wait":
		select {
		case o := <-r.background[args[0]]:
			return o.out, o.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	case "relay":
		return r.startRelay(ctx, args[0])
	case "connect":
		return r.connectStep(ctx, args[0], args[1], st)
	case "expect-relay":
		return r.expectRelay(ctx, args[0], st.Within)
	case "grid":
		return r.grid(ctx, st)
	case "console":
		res, err := r.jm(ctx, console, nil, args...)
		if err == nil && !strings.Contains(res.stdout, expect) {
			err = fmt.Errorf("stdout lacks %q", expect)
		}
		return res.output(), err
	case "stop", "start", "kill":
		return r.lifecycle(ctx, st.Action, args[0])
	case "restart":
		return r.restart(ctx, args[0])
	case "serve":
		return r.serve(args[0], args[1])
	case "fetch":
		return r.fetch(ctx, console, args[0], args[1], st, expect)
	case "partition", "heal":
		part := st.Action == "partition"
		if h := r.lab.Host(args[0]); h != nil {
			if part {
				return "", h.Partition()
			}
			return "", h.Heal()
		}
		n := r.lab.Network(args[0])
		if part {
			return "", n.Partition()
		}
		return "", n.Heal()
	case "sleep":
		d, _ := time.ParseDuration(args[0])
		select {
		case <-time.After(d):
			return "", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("unknown step %q", st.Action)
}

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
	if err := r.startCoordinator(ctx); err != nil {
		return "", err
	}
	first := r.hostOf(RoleConsole)
	res, err = r.jm(ctx, first, nil, "login", r.coordAddr, in.Invite)
	out := "coordinator " + r.coordAddr + "\n" + res.output()
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

func (r *runner) startCoordinator(ctx context.Context) error {
	ch := r.hostOf(RoleCoordinator)
	p, addr, err := r.startDaemon(ctx, ch, "coordinator", "coordinator", "run", "--data", filepath.Join(r.hostDir(ch), "site"))
	if p != nil {
		r.coord = p // teardown stops it, ready or not
	}
	r.coordAddr = addr
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
		"--listen", "/ip4/" + a + "/udp/" + relayPort + "/quic-v1", "--http-addr", "off"}
	if invite != "" {
		args = append(args, "--invite", invite)
	}
	p, addr, err := r.startDaemon(ctx, name, "relay", args...)
	if p != nil {
		if r.relays == nil {
			r.relays = map[string]*coordProc{}
		}
		r.relays[name] = p // teardown stops it, ready or not
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
	cmd.Env = append(os.Environ(), "JUMPMESH_HOME="+r.home(host), mesh.LabPublicRangesEnv+"=1")
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
	if within <= 0 {
		within = defaultWithin
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last string
	var lastErr error
	for {
		last, lastErr = r.peerStatus(ctx, name)
		if lastErr == nil && last == want {
			return name + " " + last, nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return "", fmt.Errorf("%s not %s within %v: %v", name, want, within, lastErr)
			}
			if last == "" {
				last = "not listed"
			}
			return "", fmt.Errorf("%s not %s within %v (last: %s)", name, want, within, last)
		case <-time.After(pollEvery):
		}
	}
}

// expectRelay waits until the peer says (peer status) it holds a
// reservation on a relay: before that, a console behind a NAT cannot
// reach it.
func (r *runner) expectRelay(ctx context.Context, name string, within time.Duration) (string, error) {
	if within <= 0 {
		within = defaultWithin
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		var st struct{ Relays []string }
		res, err := r.jm(ctx, name, &st, "peer", "status", "--dir", r.peers[name], "--json")
		if err == nil && len(st.Relays) > 0 {
			return name + " holds a reservation on " + strings.Join(st.Relays, ", "), nil
		}
		select {
		case <-ctx.Done():
			return res.output(), fmt.Errorf("%s holds no relay reservation after %v", name, within)
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
	if r.role(name) == RoleRelay {
		return r.relayLifecycle(ctx, action, name)
	}
	if r.role(name) == RoleCoordinator {
		switch action {
		case "start":
			if r.coord != nil {
				select {
				case <-r.coord.proc.Done():
				default:
					return "", errors.New("the coordinator is already running")
				}
			}
			return "", r.startCoordinator(ctx)
		case "stop":
			return "", r.stopCoordinator(stopGrace)
		default:
			return "", r.stopCoordinator(0)
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

// relayLifecycle stops (SIGTERM), kills (SIGKILL) or starts again a relay
// (a restart needs no invite: the relay keeps its enrollment).
func (r *runner) relayLifecycle(ctx context.Context, action, name string) (string, error) {
	p := r.relays[name]
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
		return r.runRelay(ctx, name, "")
	case !running:
		return "", fmt.Errorf("%s is not running", name)
	case action == "stop":
		return "", p.proc.Stop(stopGrace)
	}
	p.proc.Signal(syscall.SIGKILL)
	select {
	case <-p.proc.Done():
		return "killed " + name, nil
	case <-time.After(stopGrace):
		return "", fmt.Errorf("%s survived SIGKILL", name)
	}
}

func (r *runner) stopCoordinator(grace time.Duration) error {
	if r.coord == nil {
		return errors.New("the coordinator is not running")
	}
	var err error
	if grace > 0 {
		err = r.coord.proc.Stop(grace)
	} else {
		r.coord.proc.Signal(syscall.SIGKILL)
		select {
		case <-r.coord.proc.Done():
		case <-time.After(stopGrace):
			err = errors.New("the coordinator survived SIGKILL")
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

// teardown kills every process the run started, by PID, then closes the lab
// (which kills anything else left in its namespaces and checks that nothing
// remains).
func (r *runner) teardown() error {
	var errs []error
	// Background execs end by themselves (each command is bounded by
	// commandTimeout), sooner once the peers below are gone.
	defer r.bgWG.Wait()
	for name := range r.peers {
		if pid, err := r.peerPID(name); err == nil {
			errs = append(errs, r.killInHost(name, pid))
		}
	}
	for _, p := range r.relays {
		errs = append(errs, p.proc.Stop(5*time.Second))
		p.log.Close()
	}
	if r.coord != nil {
		errs = append(errs, r.coord.proc.Stop(5*time.Second))
		r.coord.log.Close()
	}
	errs = append(errs, r.lab.Close())
	return errors.Join(errs...)
}

// exec jumps from the console to a peer and checks the result; with
// "within", it tries again (once a second) until the check passes or the
// time is up — a relay may refuse a peer until its next ACL refresh.
func (r *runner) exec(ctx context.Context, console string, args []string, st Step, expect string) (string, error) {
	var deadline time.Time
	if st.Within > 0 {
		deadline = time.Now().Add(st.Within)
	}
	for {
		out, err := r.execOnce(ctx, console, args, st, expect)
		if err == nil || deadline.IsZero() || time.Now().After(deadline) || ctx.Err() != nil {
			return out, err
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, ctx.Err()
		case <-t.C:
		}
	}
}

func (r *runner) execOnce(ctx context.Context, console string, args []string, st Step, expect string) (string, error) {
	res, err := r.command(ctx, console, r.bin, append([]string{"jump", args[0], "-v"}, args[1:]...)...)
	if err != nil {
		return res.output(), err
	}
	if res.code != st.ExpectExit {
		return res.output(), fmt.Errorf("exit %d, want %d: %s", res.code, st.ExpectExit, lastLine(res.stderr))
	}
	if st.ExpectPath != "" && !strings.Contains(res.stderr, " via "+st.ExpectPath) {
		return res.output(), fmt.Errorf("path: want %s, jump -v said %q", st.ExpectPath, lastLine(res.stderr))
	}
	if !strings.Contains(res.stdout, expect) {
		return res.output(), fmt.Errorf("stdout lacks %q", expect)
	}
	return res.output(), nil
}
