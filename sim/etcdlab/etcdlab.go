// Package etcdlab runs a real etcd cluster as separate processes for the
// lab and its tests: one process per member (the lab's member binary,
// sim/labetcd, or any etcd binary, which takes the same flags), started on
// loopback or in lab hosts' namespaces, killed with SIGKILL and started
// again on the same data directory. See docs/lab.md ("etcd in the lab").
package etcdlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinaryName is the lab's member binary (go build -o jumpmesh-lab-etcd
// ./sim/labetcd), as FindBinary looks for it.
const BinaryName = "jumpmesh-lab-etcd"

// FindBinary is the member binary to run: given if set, else BinaryName
// next to this program's executable, else BinaryName or etcd in PATH.
func FindBinary(given string) (string, error) {
	if given == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), BinaryName); isExecutable(p) {
				given = p
			}
		}
	}
	for _, name := range []string{BinaryName, "etcd"} {
		if given != "" {
			break
		}
		given, _ = exec.LookPath(name)
	}
	if given == "" {
		return "", fmt.Errorf("no etcd member binary: build one with go build -o %s ./sim/labetcd (or install etcd) and put it in PATH or next to this program", BinaryName)
	}
	p, err := filepath.Abs(given)
	if err != nil {
		return "", err
	}
	if !isExecutable(p) {
		return "", fmt.Errorf("etcdlab: %s is not an executable file", p)
	}
	return p, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartLocal runs a one-member cluster of binary on loopback ports the
// system picks, its data in dir, and waits until it serves. Close stops it.
func StartLocal(ctx context.Context, binary, dir string) (*Cluster, error) {
	var ports []int
	var held []net.Listener
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range held {
		l.Close()
	}
	m := Member{Name: "local", Addr: netip.MustParseAddr("127.0.0.1"), ClientPort: ports[0], PeerPort: ports[1], Dir: dir}
	c, err := New(Config{Binary: binary, Members: []Member{m}})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Ports members listen on unless a Member says otherwise.
const (
	ClientPort = 2379
	PeerPort   = 2380
)

// readyTimeout bounds a member's start: a new cluster's first members wait
// for a quorum, so Start starts them all before it waits.
const readyTimeout = 60 * time.Second

// Member is one member of a cluster: where it listens and keeps its data.
type Member struct {
	// Name is the member's name ([a-z0-9-]).
	Name string
	// Addr is the address its client and peer listeners bind.
	Addr netip.Addr
	// ClientPort and PeerPort default to 2379 and 2380.
	ClientPort, PeerPort int
	// Dir holds the member's data (Dir/data) and its log (Dir/etcd.log).
	Dir string
}

// Endpoint is the member's client address, host:port.
func (m Member) Endpoint() string {
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(m.clientPort()))
}

func (m Member) clientPort() int {
	if m.ClientPort == 0 {
		return ClientPort
	}
	return m.ClientPort
}

func (m Member) peerURL() string {
	p := m.PeerPort
	if p == 0 {
		p = PeerPort
	}
	return "http://" + net.JoinHostPort(m.Addr.String(), strconv.Itoa(p))
}

// Proc is a started member process: an os/exec process on loopback, a
// netlab.Proc in a lab host.
type Proc interface {
	Signal(os.Signal) error
	Done() <-chan struct{}
	Wait() error
}

// Starter starts cmd for member i (in a lab host's namespace, say).
type Starter func(i int, cmd *exec.Cmd) (Proc, error)

// Config is a cluster to run.
type Config struct {
	// Binary is the member binary: sim/labetcd built, or an etcd binary.
	Binary string
	// Members are the cluster's members (three survive one loss).
	Members []Member
	// Token is the cluster's initial-cluster-token (default jmlab).
	Token string
	// Start starts a member's process; nil starts it here (loopback).
	Start Starter
	// Args are more flags for every member (e.g. --max-txn-ops 1024).
	Args []string
}

// Cluster is a running (or partly running) cluster.
type Cluster struct {
	cfg   Config
	mu    sync.Mutex
	procs []Proc // by member; nil when not running
	logs  []*os.File
}

// New makes the cluster; Start runs it.
func New(cfg Config) (*Cluster, error) {
	if cfg.Binary == "" {
		return nil, errors.New("etcdlab: no member binary")
	}
	if len(cfg.Members) == 0 {
		return nil, errors.New("etcdlab: no members")
	}
	if cfg.Token == "" {
		cfg.Token = "jmlab"
	}
	if cfg.Start == nil {
		cfg.Start = startHere
	}
	return &Cluster{cfg: cfg, procs: make([]Proc, len(cfg.Members)), logs: make([]*os.File, len(cfg.Members))}, nil
}

// Members is the cluster's members.
func (c *Cluster) Members() []Member { return c.cfg.Members }

// Endpoints is every member's client address.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.cfg.Members {
		eps = append(eps, m.Endpoint())
	}
	return eps
}

// URL is the coordinator's --store for the cluster: etcd://H:P,H:P,...
func (c *Cluster) URL() string { return "etcd://" + strings.Join(c.Endpoints(), ",") }

func (c *Cluster) initialCluster() string {
	var parts []string
	for _, m := range c.cfg.Members {
		parts = append(parts, m.Name+"="+m.peerURL())
	}
	return strings.Join(parts, ",")
}

// Start starts every member at once and waits until each serves clients.
func (c *Cluster) Start(ctx context.Context) error {
	ready := make([]<-chan error, len(c.cfg.Members))
	for i := range c.cfg.Members {
		ch, err := c.launch(i)
		if err != nil {
			return err
		}
		ready[i] = ch
	}
	var errs []error
	for _, ch := range ready {
		errs = append(errs, c.await(ctx, ch))
	}
	return errors.Join(errs...)
}

// StartMember starts member i again (after Kill or Stop) on its data
// directory and waits until it serves clients, which needs a quorum of the
// others.
func (c *Cluster) StartMember(ctx context.Context, i int) error {
	ch, err := c.launch(i)
	if err != nil {
		return err
	}
	return c.await(ctx, ch)
}

func (c *Cluster) await(ctx context.Context, ready <-chan error) error {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case err := <-ready:
		return err
	case <-t.C:
		return fmt.Errorf("etcdlab: a member is not ready after %v", readyTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// launch starts member i's process; the channel says when it is ready (nil)
// or that it exited first.
func (c *Cluster) launch(i int) (<-chan error, error) {
	m := c.cfg.Members[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[i]; p != nil {
		select {
		case <-p.Done():
		default:
			return nil, fmt.Errorf("etcdlab: member %s is running", m.Name)
		}
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(m.Dir, "etcd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	client := "http://" + m.Endpoint()
	args := append([]string{
		"--name", m.Name, "--data-dir", filepath.Join(m.Dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", m.peerURL(), "--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", c.initialCluster(), "--initial-cluster-state", "new",
		"--initial-cluster-token", c.cfg.Token,
	}, c.cfg.Args...)
	cmd := exec.Command(c.cfg.Binary, args...)
	// Both streams are scanned for readiness: labetcd says "ready" on
	// stdout, etcd logs "ready to serve client requests" on stderr.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p, err := c.cfg.Start(i, cmd)
	if err != nil {
		pw.Close()
		logf.Close()
		return nil, fmt.Errorf("etcdlab: starting member %s: %w", m.Name, err)
	}
	if c.logs[i] != nil {
		c.logs[i].Close()
	}
	c.procs[i], c.logs[i] = p, logf
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		said := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !said && (line == "ready" || strings.Contains(line, "ready to serve client requests")) {
				said = true
				ready <- nil
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := p.Wait()
		pw.Close()
		select {
		case ready <- fmt.Errorf("etcdlab: member %s exited: %v (see %s)", m.Name, err, logf.Name()):
		default:
		}
	}()
	return ready, nil
}

// Running reports whether member i's process runs.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	p := c.procs[i]
	c.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// Kill kills member i with SIGKILL and waits until it is gone.
func (c *Cluster) Kill(i int) error { return c.signal(i, syscall.SIGKILL) }

// Stop asks member i to stop (SIGTERM) and waits, killing it after 10 s.
func (c *Cluster) Stop(i int) error { return c.signal(i, syscall.SIGTERM) }

func (c *Cluster) signal(i int, sig syscall.Signal) error {
	c.mu.Lock()
	p := c.procs[i]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("etcdlab: member %s was never started", c.cfg.Members[i].Name)
	}
	select {
	case <-p.Done():
		return nil
	default:
	}
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.Done():
		return nil
	case <-t.C:
	}
	if sig == syscall.SIGKILL {
		return fmt.Errorf("etcdlab: member %s survived SIGKILL", c.cfg.Members[i].Name)
	}
	return c.signal(i, syscall.SIGKILL)
}

// Close stops every running member (SIGTERM, then SIGKILL) and closes the
// logs. The data directories stay.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.cfg.Members {
		if c.Running(i) {
			errs = append(errs, c.Stop(i))
		}
	}
	c.mu.Lock()
	for i, f := range c.logs {
		if f != nil {
			f.Close()
			c.logs[i] = nil
		}
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}

// startHere starts cmd as a child of this process that dies with it.
func startHere(_ int, cmd *exec.Cmd) (Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &localProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

type localProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *localProc) Signal(s os.Signal) error { return p.cmd.Process.Signal(s) }
func (p *localProc) Done() <-chan struct{}    { return p.done }
func (p *localProc) Wait() error              { <-p.done; return p.err }
