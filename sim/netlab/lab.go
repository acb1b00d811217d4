package netlab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"
)

// PrefixBase starts the name of every namespace, interface, nft table and
// state file a lab creates. A run's prefix is PrefixBase, a run ID of
// runIDLen characters and a dash: "jmlab-k3x9-". Interfaces carry it too, so
// it is short: with the longest local name ("p999") it fills IFNAMSIZ.
const PrefixBase = "jmlab-"

const runIDLen = 4

// Object names inside a run's prefix.
const (
	nsInet    = "inet"
	nsNet     = "net-"  // + network: the network's router (or switch)
	nsCarrier = "cgn-"  // + network: a cgnat network's carrier router
	nsHost    = "host-" // + host
	devBridge = "br"
	devWAN    = "w"
	devHost   = "e" // + the interface's number: e0, e1, …
	devPort   = "p" // + number: a bridge's side of a cable
	maxPorts  = 999
)

// Config tunes a lab. The zero value is ready to use.
type Config struct {
	// Logger receives build and teardown events; nil discards them.
	Logger *slog.Logger
	// RunID fixes the run ID (runIDLen of [a-z0-9]); empty picks a free
	// random one.
	RunID string
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Lab is a built topology. Every method is safe for concurrent use. Close
// tears everything down; until then the lab's namespaces are visible with
// `ip netns list` and usable with `ip netns exec`.
type Lab struct {
	log    *slog.Logger
	prefix string

	// buildMu is held while building and by Close, so a Close from
	// CloseAll (a signal) waits for a build in progress instead of
	// pulling namespaces from under it.
	buildMu sync.Mutex

	mu      sync.Mutex
	closed  bool
	spaces  []*netNS
	wires   []*wire
	procs   map[*Proc]struct{}
	closers []io.Closer
	ports   int

	inet      *netNS
	networks  []*Network
	hosts     []*Host
	netByName map[string]*Network
	hostByNm  map[string]*Host
}

// New builds topo in fresh namespaces. On error everything built so far is
// removed again. The caller must Close the lab (in a test: t.Cleanup).
func New(ctx context.Context, topo Topology, cfg Config) (*Lab, error) {
	p, err := topo.plan()
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	l := &Lab{
		log:       cfg.logger(),
		procs:     map[*Proc]struct{}{},
		netByName: map[string]*Network{},
		hostByNm:  map[string]*Host{},
	}
	if err := l.claim(cfg.RunID); err != nil {
		return nil, err
	}
	live.add(l)
	defer func() {
		if r := recover(); r != nil {
			_ = l.Close() // a bug while building must not leave the run behind
			panic(r)
		}
	}()
	start := time.Now()
	err = func() error {
		l.buildMu.Lock()
		defer l.buildMu.Unlock()
		return l.build(ctx, p)
	}()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("building lab %s: %w", l.prefix, err), l.Close())
	}
	l.log.Info("lab built", "prefix", l.prefix, "namespaces", len(l.spaces),
		"wires", len(l.wires), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// claim picks the run's prefix and records this process as its owner, before
// anything else exists, so Clean can tell a crashed run from a live one.
func (l *Lab) claim(runID string) error {
	for try := 0; try < 8; try++ {
		id := runID
		if id == "" {
			id = randomRunID()
		}
		if !validRunID(id) {
			return fmt.Errorf("%w: run ID %q: want %d of [a-z0-9]", ErrPrefix, id, runIDLen)
		}
		prefix := PrefixBase + id + "-"
		err := writeOwner(prefix)
		if errors.Is(err, fs.ErrExist) {
			if runID == "" {
				continue
			}
			return fmt.Errorf("run %s is taken (jumpmesh sim list): %w", prefix, err)
		}
		if err != nil {
			return fmt.Errorf("recording the owner of run %s: %w", prefix, err)
		}
		if spaces, _ := namedNetns(prefix); len(spaces) > 0 {
			// A crashed run without its owner file: never build into it.
			_ = removeOwner(prefix)
			if runID != "" {
				return fmt.Errorf("run %s has leftovers: run Clean first", prefix)
			}
			continue
		}
		l.prefix = prefix
		return nil
	}
	return errors.New("no free run ID after 8 tries")
}

const runIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomRunID() string {
	b := make([]byte, runIDLen)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = runIDAlphabet[int(b[i])%len(runIDAlphabet)]
	}
	return string(b)
}

func validRunID(id string) bool {
	if len(id) != runIDLen {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Prefix returns the run's name prefix, e.g. "jmlab-k3x9-".
func (l *Lab) Prefix() string { return l.prefix }

// Host returns the named host, or nil.
func (l *Lab) Host(name string) *Host { return l.hostByNm[name] }

// Network returns the named network, or nil.
func (l *Lab) Network(name string) *Network { return l.netByName[name] }

// Hosts returns every host in topology order.
func (l *Lab) Hosts() []*Host { return append([]*Host(nil), l.hosts...) }

// Networks returns every network in topology order.
func (l *Lab) Networks() []*Network { return append([]*Network(nil), l.networks...) }

// Close tears the lab down: it closes the sockets it handed out, kills its
// processes by PID, stops the wires, kills any process still inside one of
// its namespaces, deletes the namespaces by exact name and checks that
// nothing with the run's prefix is left. It is idempotent; only the first
// call does the work and reports.
func (l *Lab) Close() error {
	l.buildMu.Lock()
	defer l.buildMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers := l.closers
	l.closers = nil
	procs := make([]*Proc, 0, len(l.procs))
	for p := range l.procs {
		procs = append(procs, p)
	}
	wires, spaces := l.wires, l.spaces
	l.mu.Unlock()
	defer live.remove(l)

	var errs []error
	for _, c := range closers {
		_ = c.Close() // already closed by its user is fine
	}
	for _, p := range procs {
		if err := p.kill(procKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	for _, w := range wires {
		_ = w.Close()
	}
	for _, ns := range spaces {
		killed, err := killInNetns(ns.name)
		errs = append(errs, err)
		if len(killed) > 0 {
			l.log.Info("killed processes left in namespace", "netns", ns.name, "pids", killed)
		}
		ns.release()
		if err := deleteNetns(ns.name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeOwner(l.prefix); err != nil {
		errs = append(errs, err)
	}
	left, err := Leftovers(l.prefix)
	errs = append(errs, err)
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("%w: %v", ErrLeftovers, left))
	}
	l.log.Info("lab closed", "prefix", l.prefix, "namespaces", len(spaces))
	return errors.Join(errs...)
}

// track hands c to the lab to close at teardown.
func (l *Lab) track(c io.Closer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return ErrClosed
	}
	l.closers = append(l.closers, c)
	return nil
}

// live is every open lab of this process, for CloseAll.
var live = liveLabs{m: map[*Lab]struct{}{}}

type liveLabs struct {
	mu sync.Mutex
	m  map[*Lab]struct{}
}

func (s *liveLabs) add(l *Lab)    { s.mu.Lock(); s.m[l] = struct{}{}; s.mu.Unlock() }
func (s *liveLabs) remove(l *Lab) { s.mu.Lock(); delete(s.m, l); s.mu.Unlock() }

// CloseAll closes every lab this process still has open. It is the last line
// of defence for a process about to die (a signal, a test about to time out):
// cmd/jumpmesh and the lab's TestMain call it.
func CloseAll() error {
	live.mu.Lock()
	labs := make([]*Lab, 0, len(live.m))
	for l := range live.m {
		labs = append(labs, l)
	}
	live.mu.Unlock()
	var errs []error
	for _, l := range labs {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Available reports whether this process can build labs: root, network
// namespaces and /dev/net/tun.
func Available() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("%w: /dev/net/tun: %v", ErrNoNetns, err)
	}
	// Unsharing on a throwaway thread creates an anonymous namespace that
	// disappears when the thread returns to its own.
	return onThread(func() error {
		if err := unshareNet(); err != nil {
			return fmt.Errorf("%w: %v", ErrNoNetns, err)
		}
		return nil
	})
}
