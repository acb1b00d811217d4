package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ErrNoAgent says no agent serves the console home (none runs, or the one
// that ran stopped because the home's key or site changed): jump without.
var ErrNoAgent = errors.New("no agent serves this console home")

// ErrAgentNoAnswer: the agent's socket took the connection but no hello
// came back within agentHelloTimeout (a hung or stopped agent): jump goes
// without it. It wraps ErrNoAgent.
var ErrAgentNoAnswer = fmt.Errorf("%w: the agent did not answer within %v", ErrNoAgent, agentHelloTimeout)

// ErrAgentVersion: the agent speaks another version of its wire (one of
// an older or newer jumpmesh binary): jump goes without it. It wraps
// ErrNoAgent.
var ErrAgentVersion = fmt.Errorf("%w: the agent is of another jumpmesh version (agent wire version %d here)", ErrNoAgent, AgentWireVersion)

// agentDialTimeout bounds reaching the agent's socket: a local connect,
// which either answers at once or not at all.
const agentDialTimeout = time.Second

// agentHelloTimeout bounds the wait for the agent's hello, which it sends
// as it accepts, before any grant: a local round trip of well under a
// millisecond, and tens of milliseconds on a machine at load 30. 2 s is
// far beyond that, yet short against what a hung agent would otherwise
// cost (forever) and about a direct jump's own start; waiting it out
// wrongly costs only a jump without the agent.
const agentHelloTimeout = 2 * time.Second

// AgentSession is a jump the agent runs for the command line: the exec
// channel is open. Run it once, then Close it.
type AgentSession struct {
	conn *net.UnixConn
	out  *lockedWriter
	// PathLine is the jump's path, as jump -v prints it.
	PathLine string
	t        *Timing
	sent     time.Time
	seen     int // agent phases filed in t
}

// AgentExec asks the agent of the console home to open req's exec
// channel. ErrNoAgent means none serves the home; other errors are the
// jump's (the coordinator's refusal, an unreachable peer), as Jump and
// Exec return them. t, if not nil, gets the agent's phases.
func AgentExec(ctx context.Context, home string, req AgentRequest, t *Timing) (*AgentSession, error) {
	end := t.Begin("agent socket")
	d := net.Dialer{Timeout: agentDialTimeout}
	c, err := d.DialContext(ctx, "unix", filepath.Join(home, AgentSocket))
	end()
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", ErrNoAgent, err) // fs.ErrNotExist: none runs
	}
	conn := c.(*net.UnixConn)
	s := &AgentSession{conn: conn, out: &lockedWriter{w: conn}, t: t, sent: time.Now()}
	req.Timing = t != nil
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	end = t.Begin("agent hello (wire version)")
	err = s.hello()
	end()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	// From here on the agent may ask for a grant and open a session: a
	// failure is the jump's, not a reason to jump again without the agent.
	if err := s.out.json(frameRequest, req); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A failed write: the agent closed before it had the whole request.
		return nil, fmt.Errorf("%w (%v)", ErrNoAgent, err)
	}
	typ, payload, err := s.awaitOpened()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, catalog.Errorf(catalog.CodeConnectionLost,
				"(the agent took the jump's request, then said nothing for %s: stopped or stuck; jump --no-agent goes without it)", agentQuietTimeout)
		}
		return nil, catalog.Errorf(catalog.CodeConnectionLost,
			"(the agent went away after it took the jump's request, before the session opened: %v; jump --no-agent goes without it)", err)
	}
	switch typ {
	case frameOpened:
		var o agentOpened
		if err := json.Unmarshal(payload, &o); err != nil {
			conn.Close()
			return nil, fmt.Errorf("agent: %w", err)
		}
		s.addPhases(o.Origin, o.Phases)
		s.PathLine = o.Path
		return s, nil
	case frameResult:
		conn.Close()
		var r agentResult
		if err := json.Unmarshal(payload, &r); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if r.Stale {
			return nil, fmt.Errorf("%w: %w", ErrNoAgent, ErrAgentIdentityChanged)
		}
		s.addPhases(r.Origin, r.Phases)
		return nil, r.err()
	}
	conn.Close()
	return nil, fmt.Errorf("agent: unexpected frame of type %d", typ)
}

// awaitOpened reads the agent's answer to the request, skipping its
// frameWorking beats; it waits at most agentQuietTimeout for each frame.
func (s *AgentSession) awaitOpened() (byte, []byte, error) {
	defer s.conn.SetReadDeadline(time.Time{})
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(agentQuietTimeout))
		typ, payload, err := readFrame(s.conn)
		if err != nil || typ != frameWorking {
			return typ, payload, err
		}
	}
}

// hello sends the command line's hello and waits at most
// agentHelloTimeout for the agent's: nothing is sent before it that
// could start a grant. Its errors wrap ErrNoAgent.
func (s *AgentSession) hello() error {
	_ = s.conn.SetDeadline(time.Now().Add(agentHelloTimeout))
	defer s.conn.SetDeadline(time.Time{})
	if err := s.out.json(frameHello, agentHello{Version: AgentWireVersion}); err != nil {
		return fmt.Errorf("%w (the agent closed without a hello: %v)", ErrNoAgent, err)
	}
	typ, payload, err := readFrame(s.conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrAgentNoAnswer
	}
	if err != nil {
		// An agent that refused us (another user), of the first wire (no
		// hello) or dead closes without a word.
		return fmt.Errorf("%w (the agent closed without a hello: %v)", ErrNoAgent, err)
	}
	var h agentHello
	if typ != frameHello || json.Unmarshal(payload, &h) != nil {
		return fmt.Errorf("%w (a first frame of type %d that is not a hello)", ErrAgentVersion, typ)
	}
	if h.Version != AgentWireVersion {
		return fmt.Errorf("%w (the agent's is %d)", ErrAgentVersion, h.Version)
	}
	return nil
}

// addPhases files the agent's phases (all so far, of which s.seen are
// filed already) in the command line's timing. They count from origin
// (Unix nanoseconds: the agent's accepting the connection, on the same
// clock); an agent that sends none is taken to count from the moment the
// command line reached its socket.
func (s *AgentSession) addPhases(origin int64, phases []Phase) {
	from := s.sent
	if origin != 0 {
		from = time.Unix(0, origin)
	}
	for _, p := range phases[min(s.seen, len(phases)):] {
		s.t.Add("agent: "+p.Name, from.Add(p.Start), from.Add(p.End))
	}
	s.seen = max(s.seen, len(phases))
}

// Run carries eio to and from the remote process until it exits, as
// ExecSession.Run does. Cancelling ctx ends the session.
func (s *AgentSession) Run(ctx context.Context, eio ExecIO) (*pb.ExitStatus, error) {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go s.sendStdin(eio.Stdin)
	go s.sendControl(eio, done)
	stdout, stderr := orDiscard(eio.Stdout), orDiscard(eio.Stderr)
	for {
		typ, payload, err := readFrame(s.conn)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, catalog.Errorf(catalog.CodeConnectionLost, "(the agent went away: %w)", err)
		}
		switch typ {
		case frameStdout:
			_, err = stdout.Write(payload)
		case frameStderr:
			_, err = stderr.Write(payload)
		case frameResult:
			var r agentResult
			if err := json.Unmarshal(payload, &r); err != nil {
				return nil, fmt.Errorf("agent: %w", err)
			}
			s.addPhases(r.Origin, r.Phases)
			if !r.HasStatus {
				return nil, r.err()
			}
			return &pb.ExitStatus{Code: r.Code, Signal: r.Signal, Error: r.ExecError}, nil
		}
		if err != nil {
			return nil, err // a local write failed: the agent hangs up the process
		}
	}
}

// Close ends the session (the agent resets the channel if the process
// still runs).
func (s *AgentSession) Close() error { return s.conn.Close() }

// sendStdin streams input, then end of input (as execStdin does). A read
// in progress when the session ends is left: the command line exits.
func (s *AgentSession) sendStdin(in io.Reader) {
	if in != nil {
		if _, err := io.Copy(frameWriter{s.out, frameStdin}, in); err != nil {
			return
		}
	}
	_ = s.out.frame(frameStdinEOF, nil)
}

// sendControl passes on signals and window sizes until done.
func (s *AgentSession) sendControl(eio ExecIO, done <-chan struct{}) {
	for {
		var err error
		select {
		case <-done:
			return
		case ws, ok := <-eio.Resize:
			if !ok {
				eio.Resize = nil
				continue
			}
			err = s.out.json(frameResize, ws)
		case sig, ok := <-eio.Signals:
			if !ok {
				eio.Signals = nil
				continue
			}
			err = s.out.frame(frameSignal, []byte(sig))
		}
		if err != nil {
			return
		}
	}
}

// err is the result's error, with its catalog code.
func (r agentResult) err() error {
	if r.ErrCode == "" {
		return nil
	}
	code := catalog.Code(r.ErrCode)
	detail := r.ErrDetail
	if !code.Known() && r.ErrMessage != "" {
		detail = r.ErrMessage + " " + detail
	}
	return &catalog.Error{Code: code, Detail: detail}
}
