package console

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// The agent's wire, on a Unix stream socket in the console home
// (AgentSocket). Both ways it is a sequence of frames:
//
//		type (1 byte) | length (4 bytes, big endian) | payload (length bytes, ≤ agentMaxFrame)
//
//	 0. The command line sends frameHello (agentHello: its AgentWireVersion);
//	    the agent answers at once with its own frameHello and, if the
//	    versions differ, closes. Nothing before the hello can start a
//	    grant, so a command line that gets no hello in time
//	    (agentHelloTimeout), or another version's, jumps without the agent.
//	    An agent of the first wire (no hello) closes on the unknown first
//	    frame; a command line of the first wire gets no answer to its
//	    request: both sides then go without each other.
//	 1. The command line sends frameRequest: an AgentRequest as JSON.
//	 2. The agent asks the coordinator for a grant, reaches the peer (on the
//	    connection it keeps, if any), opens the exec channel, and answers
//	    frameOpened (agentOpened: the path line and the phases so far), or
//	    frameResult with the error and nothing more. Until then it sends an
//	    empty frameWorking every agentWorkingEvery: the command line waits
//	    at most agentQuietTimeout between two frames (an agent stopped or
//	    stuck after it took the request is connection_lost, not a jump that
//	    hangs; waking a passive peer may take minutes, so no bound on the
//	    whole wait would fit).
//	 3. The command line sends frameStdin chunks, one frameStdinEOF,
//	    frameSignal (a signal name) and frameResize (JSON WindowSize); the
//	    agent sends frameStdout and frameStderr chunks.
//	 4. When the remote process has exited, the agent sends frameResult
//	    (agentResult: its status, or the session's error) and closes. A
//	    command line that goes away before that ends the session: the agent
//	    resets the channel and the peer hangs up the process.
const (
	frameRequest byte = 1 + iota
	frameStdin
	frameStdinEOF
	frameSignal
	frameResize
	frameOpened
	frameStdout
	frameStderr
	frameResult
	frameHello
	frameWorking
)

// The agent's frameWorking while it sets a jump up, and how long the
// command line waits without any frame (agentclient.go). Ten beats
// between: a loaded agent misses a few and is not given up on.
const agentWorkingEvery = time.Second

var agentQuietTimeout = 10 * time.Second // a variable for the tests

// AgentWireVersion is the version of the agent's wire, in the hello each
// way. Change it with any change of the frames or their payloads that an
// agent or command line of the other version would misread. 3: the
// agent's frameWorking (a command line of 2 would give up on none, but
// would take a frameWorking for an unexpected frame).
const AgentWireVersion = 3

// agentHello is the first frame each way.
type agentHello struct {
	Version int `json:"version"`
}

// agentMaxFrame bounds a frame: an exec chunk (execChunk) and a request
// with a long command fit many times over.
const agentMaxFrame = 1 << 20

// AgentRequest is what the command line asks the agent to run: jump's
// exec or shell, as ExecCommand describes it, on the peer Ref names.
type AgentRequest struct {
	Ref  string   `json:"ref"`
	Argv []string `json:"argv,omitempty"`
	TTY  bool     `json:"tty,omitempty"`
	Term string   `json:"term,omitempty"`
	Cols uint32   `json:"cols,omitempty"`
	Rows uint32   `json:"rows,omitempty"`
	// PunchWait is the jump's PunchWait.
	PunchWait time.Duration `json:"punch_wait"`
	// Timing asks for the agent's phases (jump --timing).
	Timing bool `json:"timing,omitempty"`
	// Verbose asks for the lines jump -v prints while the session runs
	// (ExecSession.Notes: the switch to the relay's splice), as stderr
	// frames. An agent that does not know the field sends none, as before.
	Verbose bool `json:"verbose,omitempty"`
}

// agentOpened says the exec channel is open.
type agentOpened struct {
	// Path is the jump's PathLine (jump -v prints it).
	Path   string  `json:"path"`
	Phases []Phase `json:"phases,omitempty"`
	// Origin is what the phases count from: the agent's accepting the
	// connection, in Unix nanoseconds (the command line and the agent
	// share the machine's clock).
	Origin int64 `json:"origin,omitempty"`
}

// agentResult ends a request: the remote status, or an error.
type agentResult struct {
	Code       int32  `json:"code,omitempty"`
	Signal     string `json:"signal,omitempty"`
	ExecError  string `json:"exec_error,omitempty"`
	HasStatus  bool   `json:"has_status,omitempty"`
	ErrCode    string `json:"err_code,omitempty"`
	ErrDetail  string `json:"err_detail,omitempty"`
	ErrMessage string `json:"err_message,omitempty"`
	// Stale: the console home's key or site is not the agent's any more;
	// the agent has stopped and the command line jumps without it.
	Stale  bool    `json:"stale,omitempty"`
	Phases []Phase `json:"phases,omitempty"`
	Origin int64   `json:"origin,omitempty"` // as agentOpened's
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > agentMaxFrame {
		return fmt.Errorf("agent frame of %d bytes (at most %d)", len(payload), agentMaxFrame)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > agentMaxFrame {
		return 0, nil, fmt.Errorf("agent frame of %d bytes (at most %d)", n, agentMaxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// frameWriter writes each Write as one frame of type typ (stdout, stderr,
// stdin), in pieces of at most execChunk bytes.
type frameWriter struct {
	w   *lockedWriter
	typ byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += execChunk {
		if err := f.w.frame(f.typ, p[off:min(len(p), off+execChunk)]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
