package console

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// AgentSocket is the agent's socket in the console home.
const AgentSocket = "agent.sock"

// DefaultAgentIdle is how long an agent waits without a jump before it
// stops (AgentConfig.Idle).
const DefaultAgentIdle = 30 * time.Minute

// agentWarmTimeout bounds the agent's first dial of the coordinator, at
// its start (StartAgent).
const agentWarmTimeout = 2 * time.Second

// ErrAgentIdentityChanged ends an agent whose console home no longer holds
// the key or the site it started with (a new login, a replaced key): it
// must not jump as an identity the home has dropped.
var ErrAgentIdentityChanged = errors.New("the console home's key or site changed: the agent stopped")

// AgentConfig configures an agent. The zero value (plus Home) is the
// default.
type AgentConfig struct {
	// Home is the console home: the agent's key, site and socket.
	Home string
	// Idle is how long the agent waits without a jump (none running)
	// before it stops; 0 means DefaultAgentIdle, negative never.
	Idle time.Duration
	// Log receives the agent's events; nil discards them.
	Log *slog.Logger
	// ForceRelay makes every jump dial the peer only through the site's
	// relays (Jump.ForceRelay: labs and tests).
	ForceRelay bool
}

func (c AgentConfig) idle() time.Duration {
	if c.Idle == 0 {
		return DefaultAgentIdle
	}
	return c.Idle
}

func (c AgentConfig) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Agent keeps a console open for the jumps of the command line, as
// OpenSSH's ControlMaster keeps a connection: its libp2p host, its
// connection to the coordinator and those to the peers it reached, so
// that a jump costs a grant and a channel (two round trips), not a host,
// two handshakes and two dials. It keeps nothing that authorises: every
// jump asks the coordinator for its own grant (checked and audited there
// as any other), so a removed technician's agent is refused like its
// console would be.
//
// Only its owner may use it: the socket is in the console home (0700),
// is itself 0600, and the agent checks each connection's peer credentials
// (SO_PEERCRED) against its own user. Before every jump it checks that the
// home still holds the key and the site it started with, and stops if not
// (ErrAgentIdentityChanged).
type Agent struct {
	cfg      AgentConfig
	c        *Client
	ln       *net.UnixListener
	path     string
	identity [32]byte

	// activity wakes Run's idle timer; stop ends Run (identity changed).
	activity chan struct{}
	stop     chan error

	mu      sync.Mutex
	running int
	closed  bool
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// StartAgent opens the console home, starts its host, connects to the
// coordinator (waiting at most agentWarmTimeout) and listens on the agent
// socket. Another agent answering on the socket is an error; a socket no
// one answers on (an agent that died) is replaced.
func StartAgent(cfg AgentConfig) (*Agent, error) {
	id, err := homeIdentity(cfg.Home)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.Home, AgentSocket)
	if conn, err := net.Dial("unix", path); err == nil {
		conn.Close()
		return nil, fmt.Errorf("an agent is already running on %s", path)
	}
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	// The home is 0700 already; the socket says so as well.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	c, err := Open(cfg.Home)
	if err != nil {
		ln.Close()
		return nil, err
	}
	// A passive peer is woken as jump wakes it; offline peers are not
	// (jump --wake goes without the agent).
	c.SetWake(WakeOptions{})
	c.SetPeerCache(cfg.Home)
	// The first jump finds the coordinator connected, as every later one
	// does (the agent keeps the connection). Best effort: a coordinator
	// that cannot be reached now is dialled again by the jump, which
	// reports it.
	ctx, cancel := context.WithTimeout(context.Background(), agentWarmTimeout)
	_ = c.host.Connect(ctx, c.SiteInfo())
	cancel()
	return &Agent{cfg: cfg, c: c, ln: ln, path: path, identity: id,
		activity: make(chan struct{}, 1), stop: make(chan error, 1), conns: map[net.Conn]bool{}}, nil
}

// Path is the agent's socket.
func (a *Agent) Path() string { return a.path }

// Run serves the command line until ctx ends, the agent has been idle for
// its Idle time, or the home's identity changed (ErrAgentIdentityChanged).
// It closes the agent when it returns.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close()
	accepted := make(chan error, 1)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		accepted <- a.accept()
	}()
	idle := a.cfg.idle()
	timer := time.NewTimer(max(idle, time.Second))
	if idle < 0 {
		timer.Stop()
	}
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-a.stop:
			return err
		case err := <-accepted:
			return err
		case <-a.activity:
			if idle > 0 {
				timer.Reset(idle)
			}
		case <-timer.C:
			a.mu.Lock()
			busy := a.running > 0
			a.mu.Unlock()
			if !busy {
				a.cfg.log().Info("agent idle: stopping", "idle", idle)
				return nil
			}
			timer.Reset(idle)
		}
	}
}

// Close stops listening, ends the jumps running and closes the console.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	conns := a.conns
	a.conns = nil
	a.mu.Unlock()
	err := a.ln.Close()
	for c := range conns {
		c.Close()
	}
	a.wg.Wait()
	_ = os.Remove(a.path)
	return errors.Join(err, a.c.Close())
}

func (a *Agent) accept() error {
	for {
		conn, err := a.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			conn.Close()
			return nil
		}
		a.conns[conn] = true
		a.wg.Add(1)
		a.mu.Unlock()
		go func() {
			defer a.wg.Done()
			a.serve(conn)
			conn.Close()
			a.mu.Lock()
			delete(a.conns, conn)
			a.mu.Unlock()
		}()
	}
}

// serve runs one request of the command line on conn.
func (a *Agent) serve(conn *net.UnixConn) {
	accepted := time.Now()
	log := a.cfg.log()
	if uid, err := peerUID(conn); err != nil || uid != os.Getuid() {
		// Another local user (only possible if the home's or the socket's
		// modes were loosened): not a word back.
		log.Warn("agent: refused a connection from another user", "uid", uid, "err", err)
		return
	}
	select {
	case a.activity <- struct{}{}:
	default:
	}
	a.mu.Lock()
	a.running++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running--
		a.mu.Unlock()
		select {
		case a.activity <- struct{}{}:
		default:
		}
	}()

	out := &lockedWriter{w: conn}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := a.hello(conn, out); err != nil {
		log.Warn("agent: no hello", "err", err)
		return
	}
	typ, payload, err := readFrame(conn)
	var req AgentRequest
	if err == nil && typ != frameRequest {
		err = fmt.Errorf("agent: first frame is of type %d, not a request", typ)
	}
	if err == nil {
		err = json.Unmarshal(payload, &req)
	}
	if err != nil {
		log.Warn("agent: bad request", "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if id, err := homeIdentity(a.cfg.Home); err != nil || id != a.identity {
		_ = out.json(frameResult, agentResult{Stale: true})
		select {
		case a.stop <- ErrAgentIdentityChanged:
		default:
		}
		return
	}
	var t *Timing
	if req.Timing {
		t = NewTiming(accepted)
		t.Add("hello, request, home check", accepted, time.Now())
	}
	ctx := WithTiming(context.Background(), t)
	working := tellWorking(out)
	res, j := a.exec(ctx, conn, out, req, t, working)
	working()
	if t != nil {
		res.Phases, res.Origin = t.Phases(), accepted.UnixNano()
	}
	_ = out.json(frameResult, res)
	if j != nil {
		// After the answer: the command line does not wait for these.
		j.ReportPath(ctx)
		j.Close()
	}
}

// hello reads the command line's hello and answers with the agent's (its
// wire version, even to another version's command line, which then goes
// without the agent). An error (no hello, another version) ends conn.
func (a *Agent) hello(conn net.Conn, out *lockedWriter) error {
	typ, payload, err := readFrame(conn)
	if err != nil {
		return err
	}
	if typ != frameHello {
		return fmt.Errorf("first frame is of type %d, not a hello (a jump of another version?)", typ)
	}
	var h agentHello
	if err := json.Unmarshal(payload, &h); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if err := out.json(frameHello, agentHello{Version: AgentWireVersion}); err != nil {
		return err
	}
	if h.Version != AgentWireVersion {
		return fmt.Errorf("the jump speaks agent wire version %d, this agent %d", h.Version, AgentWireVersion)
	}
	return nil
}

// exec runs req's jump, carrying the process's input and output on conn,
// and returns the result and the jump (nil if there was none), which the
// caller reports and closes.
func (a *Agent) exec(ctx context.Context, conn net.Conn, out *lockedWriter, req AgentRequest, t *Timing, working func()) (agentResult, *Jump) {
	cmd := ExecCommand{Argv: req.Argv, TTY: req.TTY, Term: req.Term}
	if req.TTY && req.Cols > 0 {
		cmd.Window = &pb.WindowSize{Cols: req.Cols, Rows: req.Rows}
	}
	j, err := a.c.JumpFor(ctx, req.Ref, cmd.Need())
	if err != nil {
		return errorResult(err), nil
	}
	j.PunchWait, j.ForceRelay = req.PunchWait, a.cfg.ForceRelay
	st, err := a.run(ctx, j, cmd, req.Verbose, conn, out, t, working)
	if err != nil {
		return errorResult(err), j
	}
	return agentResult{HasStatus: true, Code: st.GetCode(), Signal: st.GetSignal(), ExecError: st.GetError()}, j
}

// run opens the exec channel and runs it until the process exits or the
// command line goes away. working stops the frameWorking beats before
// frameOpened. With verbose, the session's notes (jump -v) go to the
// command line's stderr as they would without the agent.
func (a *Agent) run(ctx context.Context, j *Jump, cmd ExecCommand, verbose bool, conn net.Conn, out *lockedWriter, t *Timing, working func()) (*pb.ExitStatus, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := j.Exec(ctx, cmd)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if verbose {
		s.Notes(func(line string) { _ = out.frame(frameStderr, []byte(NoteLine(line, cmd.TTY))) })
	}
	working()
	opened := agentOpened{Path: j.PathLine()}
	if t != nil {
		opened.Phases, opened.Origin = t.Phases(), t.origin.UnixNano()
	}
	if err := out.json(frameOpened, opened); err != nil {
		return nil, err
	}
	stdin, stdinW := io.Pipe()
	defer stdin.Close()
	signals, resize := make(chan string, 4), make(chan *pb.WindowSize, 4)
	// The command line's frames; when it goes away the session ends.
	go func() {
		defer cancel()
		defer stdinW.Close()
		for {
			typ, payload, err := readFrame(conn)
			if err != nil {
				return
			}
			switch typ {
			case frameStdin:
				_, _ = stdinW.Write(payload) // fails once the session is over
			case frameStdinEOF:
				stdinW.Close()
			case frameSignal:
				select {
				case signals <- string(payload):
				default:
				}
			case frameResize:
				var ws pb.WindowSize
				if json.Unmarshal(payload, &ws) == nil {
					select {
					case resize <- &ws:
					default:
					}
				}
			}
		}
	}()
	defer t.Begin("exec (command run until its exit status)")()
	return s.Run(ctx, ExecIO{Stdin: stdin, Stdout: frameWriter{out, frameStdout}, Stderr: frameWriter{out, frameStderr},
		Signals: signals, Resize: resize})
}

func errorResult(err error) agentResult {
	code, message, detail := catalog.LocalErrorParts(err)
	return agentResult{ErrCode: string(code), ErrMessage: message, ErrDetail: detail}
}

// homeIdentity is a digest of the console home's key and config files:
// what the agent jumps as.
func homeIdentity(home string) ([32]byte, error) {
	f := files(home)
	key, err := os.ReadFile(f.KeyPath())
	if err != nil {
		return [32]byte{}, fmt.Errorf("console key: %w", err)
	}
	cfg, err := os.ReadFile(f.ConfigPath())
	if err != nil {
		return [32]byte{}, catalog.Errorf(catalog.CodeNotLoggedIn, "(no %s in %s)", ConfigFile, home)
	}
	h := sha256.New()
	h.Write(key)
	h.Write([]byte{0})
	h.Write(cfg)
	var id [32]byte
	h.Sum(id[:0])
	return id, nil
}

// peerUID is the user ID of the process at the other end of conn.
func peerUID(conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// tellWorking sends frameWorking every agentWorkingEvery until the
// returned stop is called; stop waits for a beat being written, so none
// follows it, and may be called more than once.
func tellWorking(out *lockedWriter) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(agentWorkingEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if out.frame(frameWorking, nil) != nil {
					return
				}
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// lockedWriter writes whole frames from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) frame(typ byte, payload []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return writeFrame(l.w, typ, payload)
}

func (l *lockedWriter) json(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return l.frame(typ, b)
}
