package scale

// The storm's fleet in child processes (the parent side; the child's is
// fleetchild.go). With the fleet out of its process, the engine's process
// holds the coordinator's end of each connection only: its open files are
// one a TCP peer, and its memory per online peer is the coordinator's.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"
)

// procFleetConfig is a fleet split over child processes.
type procFleetConfig struct {
	// Command starts one child (argv): a process that serves
	// ServeFleetProcess on its stdin and fd 3 when FleetChildEnv is set.
	Command []string
	Key     string
	// Parts are each child's peers and transport, in order.
	Parts []FleetPart
}

// procFleet is a fleet whose peers run in child processes. Any child that
// exits before Close asked it to fails the fleet: failed closes and
// failure says which child and why (its stderr).
type procFleet struct {
	children []*fleetProc
	peers    int
	startAt  time.Time

	failedCh chan struct{}
	failOnce sync.Once
	err      error
	closing  atomic.Bool
	once     sync.Once
	closeErr error
}

// startProcFleet starts the children and waits (until ctx ends) for each to
// have built its hosts. On error every child started is gone.
func startProcFleet(ctx context.Context, cfg procFleetConfig) (_ *procFleet, err error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("no command to start a fleet process with")
	}
	f := &procFleet{failedCh: make(chan struct{})}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	for i, part := range cfg.Parts {
		hostname := "scale"
		if i > 0 {
			hostname = fmt.Sprint("scale", i) // names apart: scale1-00042
		}
		c, err := startFleetProc(cfg.Command, i, len(cfg.Parts), ChildConfig{Key: cfg.Key, Peers: part.Peers, Transport: part.Transport, Hostname: hostname})
		if c != nil { // started: Close stops it, even if err
			f.children = append(f.children, c)
			f.peers += part.Peers
			go func() {
				<-c.exited
				if !f.closing.Load() {
					f.fail(c.exitError())
				}
			}()
		}
		if err != nil {
			return nil, err
		}
	}
	for _, c := range f.children {
		if c.ready, err = c.await(ctx, "ready"); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// fail records the first child's failure.
func (f *procFleet) fail(err error) {
	f.failOnce.Do(func() { f.err = err; close(f.failedCh) })
}

// failed is closed once a child has exited unasked; failure says why.
func (f *procFleet) failed() <-chan struct{} { return f.failedCh }

// failure is the first child's, nil while none has failed.
func (f *procFleet) failure() error {
	select {
	case <-f.failedCh:
		return f.err
	default:
		return nil
	}
}

// IdleBytes is what the children's hosts weigh before they connect (heap
// in use and stacks after a GC, all children).
func (f *procFleet) IdleBytes() int64 {
	var n int64
	for _, c := range f.children {
		n += c.ready.Heap + c.ready.Stack
	}
	return n
}

// Start tells every child to start its peers; the rate is shared out by
// the children's sizes.
func (f *procFleet) Start(rate float64) {
	f.startAt = time.Now()
	for _, c := range f.children {
		cmd := "go"
		if rate > 0 {
			cmd = fmt.Sprint("go ", rate*float64(c.cfg.Peers)/float64(f.peers))
		}
		c.sentAt = time.Now()
		if err := c.send(cmd); err != nil {
			f.fail(err)
		}
	}
}

// Wait waits for every child's "welcomed", and returns the time from Start
// to the last first welcome.
func (f *procFleet) Wait(ctx context.Context) (time.Duration, error) {
	var took time.Duration
	for _, c := range f.children {
		if c.welcomed == nil {
			ev, err := c.await(ctx, "welcomed")
			if err != nil {
				return 0, fmt.Errorf("%d of %d peers welcomed: %w", f.welcomedSoFar(), f.peers, err)
			}
			c.welcomed = &ev
		}
		took = max(took, c.sentAt.Sub(f.startAt)+c.welcomed.Elapsed)
	}
	return took, nil
}

// StormCPU is the children's CPU from "go" to their last first welcome
// (after Wait).
func (f *procFleet) StormCPU() time.Duration {
	var cpu time.Duration
	for _, c := range f.children {
		if c.welcomed != nil {
			cpu += c.welcomed.CPU
		}
	}
	return cpu
}

// welcomedSoFar asks the children that have not said "welcomed" how far
// they are, for an error; best effort.
func (f *procFleet) welcomedSoFar() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	for _, c := range f.children {
		if c.welcomed != nil {
			n += int64(c.cfg.Peers)
		} else if t, err := c.totals(ctx); err == nil {
			n += t.Welcomed
		}
	}
	return n
}

// Latencies are every welcomed peer's registration latency, sorted; a
// child that does not answer within a minute fails the fleet.
func (f *procFleet) Latencies() []time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []time.Duration
	for _, c := range f.children {
		ev, err := c.ask(ctx, "latencies")
		if err != nil {
			f.fail(err)
			continue
		}
		out = append(out, ev.Latencies...)
	}
	slices.Sort(out)
	return out
}

// Totals are the children's counts added up; a child that does not answer
// within 30 s fails the fleet.
func (f *procFleet) Totals() FleetTotals {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sum FleetTotals
	for _, c := range f.children {
		t, err := c.totals(ctx)
		if err != nil {
			f.fail(err)
			continue
		}
		sum = sum.plus(t)
	}
	return sum
}

// peerIDs are the children's peer IDs, child after child.
func (f *procFleet) peerIDs() ([]lpeer.ID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []lpeer.ID
	for _, c := range f.children {
		ev, err := c.ask(ctx, "ids")
		if err != nil {
			return nil, err
		}
		for _, s := range ev.IDs {
			id, err := lpeer.Decode(s)
			if err != nil {
				return nil, fmt.Errorf("fleet process %d: peer ID %q: %w", c.index, s, err)
			}
			out = append(out, id)
		}
	}
	return out, nil
}

// Close stops every child (its hosts close, so their connections end now)
// and waits for it to exit, killing one that does not within 30 s and
// 10 ms a peer (closing 10,000 hosts on a loaded machine takes a while).
// It is safe to call more than once.
func (f *procFleet) Close() error {
	f.once.Do(func() {
		f.closing.Store(true)
		var errs []error
		for _, c := range f.children {
			c.send("stop")
			c.stdin.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+time.Duration(f.peers)*10*time.Millisecond)
		defer cancel()
		for _, c := range f.children {
			select {
			case <-c.exited:
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("%s did not stop in time: killed", c.name()))
				c.cmd.Process.Kill()
				<-c.exited
			}
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// plus adds u's counts to t's.
func (t FleetTotals) plus(u FleetTotals) FleetTotals {
	t.Welcomed += u.Welcomed
	t.Welcomes += u.Welcomes
	t.Retries += u.Retries
	t.Refusals += u.Refusals
	t.Failures += u.Failures
	t.Down += u.Down
	t.GaveUp += u.GaveUp
	t.Reported += u.Reported
	t.Updates += u.Updates
	if u.Sample != "" {
		t.Sample = u.Sample
	}
	if len(u.FailureReasons) > 0 {
		reasons := maps.Clone(t.FailureReasons)
		if reasons == nil {
			reasons = map[string]int64{}
		}
		for k, v := range u.FailureReasons {
			reasons[k] += v
		}
		t.FailureReasons = reasons
	}
	return t
}

// fleetProc is one child.
type fleetProc struct {
	index, of int
	cfg       ChildConfig
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	output    *tailBuffer
	// events has a channel per event name (the reader drops others);
	// asks serialises questions, whose answers come in order.
	events map[string]chan FleetEvent
	asks   sync.Mutex
	// exited closes once the process has exited and its events are read;
	// waitErr is cmd.Wait's.
	exited  chan struct{}
	waitErr error

	ready    FleetEvent
	sentAt   time.Time
	welcomed *FleetEvent
}

var fleetEvents = []string{"ready", "welcomed", "totals", "latencies", "ids", "reported", "updates", "idle", "stopped"}

// startFleetProc starts child index of of with cfg on its stdin. It dies
// with this process (SIGKILL when its parent thread ends, and it stops at
// the end of its stdin).
func startFleetProc(command []string, index, of int, cfg ChildConfig) (*fleetProc, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c := &fleetProc{index: index, of: of, cfg: cfg, output: &tailBuffer{}, events: map[string]chan FleetEvent{}, exited: make(chan struct{})}
	for _, name := range fleetEvents {
		c.events[name] = make(chan FleetEvent, 1)
	}
	c.cmd = exec.Command(command[0], command[1:]...)
	c.cmd.Env = append(os.Environ(), FleetChildEnv+"=1")
	c.cmd.ExtraFiles = []*os.File{evW}
	c.cmd.Stdout, c.cmd.Stderr = c.output, c.output
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		evR.Close()
		evW.Close()
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		evR.Close()
		evW.Close()
		return nil, fmt.Errorf("starting fleet process %d of %d (%s): %w", index+1, of, command[0], err)
	}
	evW.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer evR.Close()
		sc := newLineScanner(evR)
		for sc.Scan() {
			var ev FleetEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ch, ok := c.events[ev.Event]; ok {
				select {
				case ch <- ev:
				default: // an answer nobody waits for any more
				}
			}
		}
	}()
	go func() {
		c.waitErr = c.cmd.Wait()
		<-read
		close(c.exited)
	}()
	if err := c.send(string(raw)); err != nil {
		return c, err
	}
	return c, nil
}

// name is the child for messages: "fleet process 1 of 3 (pid 4242, 9744 peers over tcp)".
func (c *fleetProc) name() string {
	return fmt.Sprintf("fleet process %d of %d (pid %d, %d peers over %s)", c.index+1, c.of, c.cmd.Process.Pid, c.cfg.Peers, c.cfg.Transport)
}

// exitError says how the child ended, with the end of its output.
func (c *fleetProc) exitError() error {
	how := "exited"
	if c.waitErr != nil {
		how = "ended: " + c.waitErr.Error()
	}
	out := strings.TrimSpace(c.output.String())
	if out == "" {
		out = "(nothing on stderr)"
	}
	return fmt.Errorf("%s %s; its output: %s", c.name(), how, out)
}

// send writes a line to the child. If the child has ended, the error is
// how it ended (the pipe breaks first: give Wait a moment to tell why).
func (c *fleetProc) send(line string) error {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		select {
		case <-c.exited:
			return c.exitError()
		case <-time.After(5 * time.Second):
		}
		what := strings.Fields(line + " ")[0]
		if strings.HasPrefix(what, "{") {
			what = "its config" // it holds the installer key
		}
		return fmt.Errorf("%s: writing %s: %w", c.name(), what, err)
	}
	return nil
}

// await waits for the next event named want, until ctx ends or the child
// exits.
func (c *fleetProc) await(ctx context.Context, want string) (FleetEvent, error) {
	ch := c.events[want]
	select {
	case ev := <-ch:
		return ev, nil
	case <-c.exited:
		select {
		case ev := <-ch:
			return ev, nil
		default:
		}
		return FleetEvent{}, c.exitError()
	case <-ctx.Done():
		return FleetEvent{}, fmt.Errorf("%s: no %q: %w", c.name(), want, context.Cause(ctx))
	}
}

// ask sends cmd and waits for the event of its name.
func (c *fleetProc) ask(ctx context.Context, cmd string) (FleetEvent, error) {
	c.asks.Lock()
	defer c.asks.Unlock()
	if err := c.send(cmd); err != nil {
		return FleetEvent{}, err
	}
	return c.await(ctx, strings.Fields(cmd)[0])
}

func (c *fleetProc) totals(ctx context.Context) (FleetTotals, error) {
	ev, err := c.ask(ctx, "totals")
	if err != nil {
		return FleetTotals{}, err
	}
	if ev.Totals == nil {
		return FleetTotals{}, fmt.Errorf("%s: totals without counts", c.name())
	}
	return *ev.Totals, nil
}

// tailBuffer keeps the last 4 KB a child wrote on stdout and stderr.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 4096; over > 0 {
		t.buf = bytes.Clone(t.buf[over:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
