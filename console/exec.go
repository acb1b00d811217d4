package console

import (
	"context"
	"errors"
	"io"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// execChunk is the largest stdin chunk sent at once: small enough that a
// keystroke is never held back, large enough for piped input.
const execChunk = 32 << 10

// ExecIO is the local end of a shell or command.
type ExecIO struct {
	// Stdin is streamed to the process; its end is passed on as end of
	// input. Nil means no input. With a tty, Ctrl-D (0x04) is what ends a
	// shell, as in ssh.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output (with a tty,
	// everything is stdout). Nil discards.
	Stdout, Stderr io.Writer
	// Resize carries window size changes (tty only).
	Resize <-chan *pb.WindowSize
	// Signals carries signal names for the remote process group: "INT",
	// "TERM", "HUP", "KILL".
	Signals <-chan string
}

// ExecCommand is what an exec channel runs on the peer.
type ExecCommand struct {
	// Argv is the command; empty: the user's login shell.
	Argv []string
	// TTY runs it in a PTY (a shell always has one), with the terminal
	// type Term and the first window size Window (nil: the peer's
	// default). A PTY makes any command interactive, so it needs the
	// shell capability.
	TTY    bool
	Term   string
	Window *pb.WindowSize
}

// Need is the grant cmd needs: the shell capability for a shell or a PTY,
// otherwise exec of Argv (the coordinator checks it against the session
// policies' commands); its channel is opened while the grant is asked for
// (Need.Open).
func (cmd ExecCommand) Need() Need {
	if cmd.TTY || len(cmd.Argv) == 0 {
		return Need{Capability: grant.Shell, Open: cmd.channelOpen()}
	}
	return Need{Capability: grant.Exec, Argv: cmd.Argv, Open: cmd.channelOpen()}
}

// channelOpen is the exec channel's open for cmd (no grant).
func (cmd ExecCommand) channelOpen() *pb.ChannelOpen {
	open := &pb.ExecOpen{Argv: cmd.Argv, Tty: cmd.TTY, Term: cmd.Term}
	if cmd.TTY && cmd.Window != nil {
		open.Cols, open.Rows = cmd.Window.GetCols(), cmd.Window.GetRows()
	}
	return &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: open}}
}

// ExecSession is an open exec channel: Run it once, then Close it.
type ExecSession struct {
	ch *channel.Channel
}

// Exec opens an exec channel for cmd on the peer (connecting first, see
// Connect); ctx bounds the opening only. The process starts when the peer
// accepts; Run carries its input and output.
func (j *Jump) Exec(ctx context.Context, cmd ExecCommand) (*ExecSession, error) {
	ch, err := j.Open(ctx, cmd.channelOpen())
	if err != nil {
		return nil, err
	}
	return &ExecSession{ch: ch}, nil
}

// Run carries eio to and from the process until it exits (see Exec): the
// window sizes and signals eio carries are the session's PTY and signal
// options. Cancelling ctx ends the session (the peer hangs up the process).
func (s *ExecSession) Run(ctx context.Context, eio ExecIO) (*pb.ExitStatus, error) {
	return Exec(ctx, s.ch, eio)
}

// Close releases the channel.
func (s *ExecSession) Close() error { return s.ch.Close() }

// Notes makes note see a line when a relayed session moves to the relay's
// splice, or stays in its circuit because the splice could not be reached
// (mesh/channel/bulkswitch.go; jump -v). Call it before Run.
func (s *ExecSession) Notes(note func(string)) { s.ch.SetBulkNote(note) }

// NoteLine is how jump -v prints a note on stderr, with or without the
// agent: "jumpmesh: " and the line, ended for a raw terminal when the
// session has a PTY.
func NoteLine(line string, tty bool) string {
	if tty {
		return "jumpmesh: " + line + "\r\n"
	}
	return "jumpmesh: " + line + "\n"
}

// Exec runs the exec channel ch (opened with an ExecOpen) until the remote
// process exits and returns its status. The error is for the session
// itself (cut short, ctx ended, a local write failed), never for the
// process's exit code. When ctx ends the channel is reset and the peer
// hangs up the process.
//
// A Read on Stdin in progress when Exec returns is not waited for (a
// terminal read cannot be interrupted); that goroutine ends at its next
// read, as its send then fails.
func Exec(ctx context.Context, ch *channel.Channel, eio ExecIO) (*pb.ExitStatus, error) {
	stop := context.AfterFunc(ctx, func() { _ = ch.Reset() })
	defer stop()
	done := make(chan struct{})
	control := make(chan struct{})
	go func() { defer close(control); execControl(ch, eio, done) }()
	go execStdin(ch, eio.Stdin)

	st, err := execOutput(ch, eio)
	close(done)
	<-control
	if err != nil {
		_ = ch.Reset()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	_ = ch.CloseWrite()
	return st, nil
}

// execOutput writes the process's output until its exit status arrives.
func execOutput(ch *channel.Channel, eio ExecIO) (*pb.ExitStatus, error) {
	stdout, stderr := orDiscard(eio.Stdout), orDiscard(eio.Stderr)
	for {
		var m pb.ExecMsg
		if err := ch.ReadMsg(&m); err != nil {
			return nil, catalog.Errorf(catalog.CodeConnectionLost, "(no exit status came back: %w)", err)
		}
		var err error
		switch b := m.GetBody().(type) {
		case *pb.ExecMsg_Stdout:
			_, err = stdout.Write(b.Stdout)
		case *pb.ExecMsg_Stderr:
			_, err = stderr.Write(b.Stderr)
		case *pb.ExecMsg_Exit:
			return b.Exit, nil
		}
		if err != nil {
			// Like a pipe reader that went away: the remote side is hung up.
			return nil, err
		}
	}
}

// execStdin streams input, then end of input.
func execStdin(ch *channel.Channel, in io.Reader) {
	if in != nil {
		buf := make([]byte, execChunk)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if ch.WriteMsg(&pb.ExecMsg{Body: &pb.ExecMsg_Stdin{Stdin: buf[:n]}}) != nil {
					return
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
		}
	}
	_ = ch.WriteMsg(&pb.ExecMsg{Body: &pb.ExecMsg_StdinEof{StdinEof: true}})
}

// execControl passes on window sizes and signals until done.
func execControl(ch *channel.Channel, eio ExecIO, done <-chan struct{}) {
	for {
		var m *pb.ExecMsg
		select {
		case <-done:
			return
		case ws, ok := <-eio.Resize:
			if !ok {
				eio.Resize = nil
				continue
			}
			m = &pb.ExecMsg{Body: &pb.ExecMsg_Resize{Resize: ws}}
		case sig, ok := <-eio.Signals:
			if !ok {
				eio.Signals = nil
				continue
			}
			m = &pb.ExecMsg{Body: &pb.ExecMsg_Signal{Signal: sig}}
		}
		if ch.WriteMsg(m) != nil {
			return
		}
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
