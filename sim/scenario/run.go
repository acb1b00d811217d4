package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/sim/etcdlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/results"
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
	Progress func(results.Step)
	// Pcap captures every host's interface, both directions, into
	// hosts/HOST/HOST.pcap for the whole run.
	Pcap bool
	// EtcdBinary is the etcd member the scenario's etcd hosts run (sim/labetcd
	// built, or an etcd binary); required when it has etcd hosts.
	EtcdBinary string
}

// Run builds the scenario's lab, runs its steps in order (stopping at the
// first failure; the rest are reported as skipped), tears everything down
// and writes results.json into opt.OutDir. A failed step makes the run's OK
// false; the error is for runs that could not happen at all (no root, bad
// options, a lab that could not be built) or could not be cleaned up.
func Run(ctx context.Context, sc *Scenario, opt Options) (res *results.Run, err error) {
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
	etcdBin, err := findEtcdBinary(sc, opt.EtcdBinary)
	if err != nil {
		return nil, err
	}
	res = &results.Run{Scenario: sc.Name, Started: time.Now().UTC(), Steps: []results.Step{}}
	defer func() {
		res.DurationMS = ms(time.Since(res.Started))
		if werr := res.Write(filepath.Join(out, results.File)); werr != nil && err == nil {
			err = werr
		}
	}()
	lab, err := netlab.New(ctx, topo, netlab.Config{Logger: opt.Logger})
	if err != nil {
		res.Error = err.Error()
		return res, err
	}
	r := &runner{sc: sc, lab: lab, bin: bin, etcdBin: etcdBin, out: out, peers: map[string]string{}, res: res,
		daemons: map[string]*coordProc{}, coords: map[string]*coordProc{}, writes: map[string]*writeLoad{}, captures: map[string]*capture{}, marker: newMarker()}
	res.Lab = lab.Prefix()
	for _, n := range sc.Networks {
		nr := results.Network{Name: n.Name, NAT: string(n.NAT)}
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
		hr := results.Host{Name: h.Name, Network: lh.Network().Name(), Role: h.Role, Addr: lh.Addr().String(), Dir: r.hostDir(h.Name)}
		if pa := publicAddr(lh); pa.IsValid() {
			hr.Public = pa.String()
		}
		if nics := lh.NICs(); len(nics) > 1 {
			for _, n := range nics {
				hr.Networks = append(hr.Networks, results.HostNIC{Network: n.Network.Name(), Addr: n.Addr.String()})
			}
		}
		res.Hosts = append(res.Hosts, hr)
		if err := os.MkdirAll(r.hostDir(h.Name), 0o755); err != nil {
			lab.Close()
			return res, err
		}
		if opt.Pcap {
			// The lab closes (and flushes) the capture at teardown.
			if _, err := r.startCapture(h.Name); err != nil {
				lab.Close()
				return res, err
			}
		}
	}
	if err := r.startWakeWatch(); err != nil {
		lab.Close()
		return res, err
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
		sr := results.Step{Index: i + 1, Name: st.Name(), Start: time.Now().UTC()}
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
	r.collectNAT(ctx)
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

// runner is one run's state.
type runner struct {
	sc  *Scenario
	lab *netlab.Lab
	bin string
	out string

	coords    map[string]*coordProc // coordinators, by host
	daemons   map[string]*coordProc // relays and jumpoints, by host
	coordAddr string                // the first coordinator's /tcp/ login address
	etcdBin   string                // the etcd member binary (Options.EtcdBinary)
	etcd      *etcdlab.Cluster      // the site's cluster, with etcd hosts (ha.go)
	writes    map[string]*writeLoad // write loads by name (ha.go)
	peers     map[string]string     // peer name → install dir
	// consoleIDs: console host → its peer ID (punchlog.go), under resMu.
	consoleIDs map[string]string

	res   *results.Run // Paths grows as connect and grid steps measure
	resMu sync.Mutex   // guards res.Paths (a grid's consoles run at once)

	background map[string]chan stepOutcome // background execs by name
	bgWG       sync.WaitGroup

	// marker is this run's ${marker}: a string that appears nowhere but
	// where the steps send it.
	marker   string
	captures map[string]*capture // by host
	killed   []killed            // relays and jumpoints killed, in order
	cps      int                 // cp steps so far, for file names
	wake     *wakeLab            // sleeping hosts and what woke them
}

// killed is a relay or jumpoint the run killed, and when.
type killed struct {
	name string
	at   time.Time
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

// env is the environment of a jumpmesh process on host: its console home
// and the lab-only switch that makes libp2p treat the lab's public ranges
// as public.
//
// On etcd a coordinator host's processes are the instance named after it
// (JUMPMESH_INSTANCE, coordinator run --instance).
func (r *runner) env(host string) []string {
	env := append(os.Environ(), "JUMPMESH_HOME="+r.home(host), mesh.LabPublicRangesEnv+"=1")
	if r.hasEtcd() && r.role(host) == RoleCoordinator {
		env = append(env, "JUMPMESH_INSTANCE="+host)
	}
	return env
}
func (r *runner) home(name string) string { return filepath.Join(r.hostDir(name), "home") }

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
	cmd.Env = r.env(host)
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

// varRE is compiled at its first use: every jumpmesh process, a jump's
// included, initialises this package (issue 17).
var varRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$\{([a-z0-9-]+)\.(addr|public)\}`) })

// markerVar is replaced by the run's marker.
const markerVar = "${marker}"

// expand replaces ${HOST.addr} (a host's address), ${HOST.public} or
// ${NETWORK.public} (the public address of the host's or network's NAT)
// and ${marker} (the run's marker).
func (r *runner) expand(s string) (string, error) {
	s = strings.ReplaceAll(s, markerVar, r.marker)
	var bad error
	s = varRE().ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE().FindStringSubmatch(m)
		if h := r.lab.Host(sub[1]); h != nil {
			if sub[2] == "addr" {
				return h.Addr().String()
			}
			if pa := publicAddr(h); pa.IsValid() {
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
		if r.role(args[0]) == RoleJumpoint {
			return r.expectJumpointRelay(ctx, console, args[0], st.Within)
		}
		return r.expectRelay(ctx, args[0], st.Within)
	case "grid":
		return r.grid(ctx, st)
	case "console":
		expectErr, err := r.expand(st.ExpectStderr)
		if err != nil {
			return "", err
		}
		return r.retry(ctx, st.Within, func() (string, error) {
			r.noteWakeCommand(st.line, args)
			return r.consoleOnce(ctx, console, args, st, expect, expectErr)
		})
	case "suspend":
		password := ""
		if len(args) == 3 {
			password = args[2]
		}
		return r.suspend(ctx, args[0], password)
	case "expect-awake":
		return r.expectAwake(ctx, args[0], st.Within)
	case "expect-asleep":
		d, _ := time.ParseDuration(args[2])
		return r.expectAsleep(ctx, args[0], d)
	case "expect-wake-sent", "expect-no-wake-sent":
		return r.expectWakeSent(ctx, console, args[0], st.Action == "expect-wake-sent", st.Within)
	case "stop", "start", "kill":
		return r.lifecycle(ctx, st.Action, args[0])
	case "restart":
		return r.restart(ctx, args[0])
	case "serve":
		return r.serve(args[0], args[1])
	case "fetch":
		if st.ExpectError != "" {
			want, err := r.expand(st.ExpectError)
			if err != nil {
				return "", err
			}
			return r.fetchRefused(ctx, console, args[0], args[1], want)
		}
		return r.retry(ctx, st.Within, func() (string, error) { return r.fetch(ctx, console, args[0], args[1], st, expect) })
	case "jumpoint":
		return r.startJumpoint(ctx, args[0], args[1:])
	case "expect-jumpoint":
		n, _ := strconv.Atoi(args[2])
		return r.expectJumpoint(ctx, args[0], n, st.Within)
	case "expect-splices":
		n, _ := strconv.Atoi(args[1])
		return r.expectSplices(ctx, args[0], n, st.Within)
	case "cp":
		return r.copyRoundTrip(ctx, console, args[0], args[1])
	case "writes":
		return r.startWrites(ctx, console, args[0])
	case "expect-kept":
		return r.expectKept(ctx, console, args[0])
	case "capture":
		return r.startCapture(args[0])
	case "expect-capture":
		return r.expectCapture(args[0], args[1] == "has", args[2])
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

// teardown kills every process the run started, by PID, then closes the lab
// (which kills anything else left in its namespaces and checks that nothing
// remains).
func (r *runner) teardown() error {
	// No sleeping host may start its peer again while teardown kills them.
	r.stopWake()
	var errs []error
	// Background execs end by themselves (each command is bounded by
	// commandTimeout), sooner once the peers below are gone.
	defer r.bgWG.Wait()
	for name := range r.peers {
		if pid, err := r.peerPID(name); err == nil {
			errs = append(errs, r.killInHost(name, pid))
		}
	}
	for _, p := range r.daemons {
		errs = append(errs, p.proc.Stop(5*time.Second))
		p.log.Close()
	}
	for _, c := range r.coords {
		errs = append(errs, c.proc.Stop(5*time.Second))
		c.log.Close()
	}
	r.stopWrites()
	if r.etcd != nil {
		errs = append(errs, r.etcd.Close())
	}
	errs = append(errs, r.lab.Close())
	return errors.Join(errs...)
}

// exec jumps from the console to a peer and checks the result; with
// "within", it tries again (once a second) until the check passes or the
// time is up — a relay may refuse a peer until its next ACL refresh.
func (r *runner) exec(ctx context.Context, console string, args []string, st Step, expect string) (string, error) {
	return r.retry(ctx, st.Within, func() (string, error) { return r.execOnce(ctx, console, args, st, expect) })
}

// retry runs once until it succeeds, once a second, for at most within
// (zero: once).
func (r *runner) retry(ctx context.Context, within time.Duration, once func() (string, error)) (string, error) {
	var deadline time.Time
	if within > 0 {
		deadline = time.Now().Add(within)
	}
	for {
		out, err := once()
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

// execWaitDirect is how long an exec that expects a direct path lets the
// jump wait for the punch before it opens its session (the CLI's default is
// 1 s). The step checks that punching works, not how fast: that is the
// grid's figure, and a busy machine may take longer than a second.
const execWaitDirect = 10 * time.Second

func (r *runner) execOnce(ctx context.Context, console string, args []string, st Step, expect string) (string, error) {
	jump := []string{"jump", args[0], "-v"}
	switch {
	case st.WaitDirect > 0:
		jump = append(jump, "--wait-direct", st.WaitDirect.String())
	case st.ExpectPath == "direct":
		jump = append(jump, "--wait-direct", execWaitDirect.String())
	}
	res, err := r.command(ctx, console, r.bin, append(jump, args[1:]...)...)
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
