package peer

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Timing and sizes of exec channels.
const (
	// execDrainTimeout is how long output may still arrive after the
	// process exited: a background child that inherited stdout would
	// otherwise hold the session open forever.
	execDrainTimeout = 2 * time.Second
	// execKillGrace separates SIGHUP and SIGKILL when the console goes away.
	execKillGrace = 2 * time.Second
	// execLinger is how long the peer waits, after sending exit, for the
	// console to close its side.
	execLinger = 5 * time.Second
	// execChunk is the largest output chunk read at once.
	execChunk = 32 << 10
)

// Log field names.
const (
	execLogErr    = "err"
	execLogSignal = "signal"
)

// ExecOptions tune ServeExec.
type ExecOptions struct {
	// Env is extra environment (KEY=value) for the process; it wins over
	// what the console asked for.
	Env []string
	// Logger receives the session's oddities; nil discards them.
	Logger *slog.Logger
}

func (o ExecOptions) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ServeExec serves an accepted exec channel (after Ready): it runs open's
// argv, or the login shell of the user the peer runs as when argv is
// empty, in that user's home directory; with open.Tty inside a real
// pseudo-terminal, otherwise with separate stdin, stdout and stderr pipes.
// It returns when the process has exited and the console has been told:
// the last message is always ExecMsg{exit}, after which the write side is
// closed. The caller closes the channel and records the status.
func ServeExec(ctx context.Context, ch *channel.Channel, open *pb.ExecOpen, opts ExecOptions) *pb.ExitStatus {
	log := opts.logger()
	p, err := execStart(open, opts)
	var st *pb.ExitStatus
	if err != nil {
		log.Info("exec could not start", execLogErr, err)
		st = execStartFailure(err)
		// Say why on the session's stderr, as the shell behind ssh would:
		// the technician sees it, not only the peer's log.
		msg := execStartMessage(open, st.GetCode(), err)
		if werr := ch.WriteMsg(&pb.ExecMsg{Body: &pb.ExecMsg_Stderr{Stderr: []byte(msg)}}); werr != nil {
			log.Debug("exec: sending why it could not start", execLogErr, werr)
		}
	} else {
		p.log = log
		st = p.run(ctx, ch)
	}
	if err := ch.WriteMsg(&pb.ExecMsg{Body: &pb.ExecMsg_Exit{Exit: st}}); err != nil {
		log.Debug("exec: sending the exit status", execLogErr, err)
	}
	_ = ch.CloseWrite()
	if p != nil {
		p.finish(ch)
	}
	return st
}

// execProc is a started process and the files the peer holds for it.
type execProc struct {
	cmd   *exec.Cmd
	pty   *os.File   // the pseudo-terminal's master, with a tty
	stdin *os.File   // the write end of stdin, without a tty
	outs  []*os.File // stdout then stderr, or the master alone
	log   *slog.Logger

	stdinOnce   sync.Once
	stdinBroken bool // the process stopped reading; only the reader touches it
	exited      chan struct{}
	lost        chan struct{} // the console's side failed
	readerDone  chan struct{}
}

func newExecProc(cmd *exec.Cmd) *execProc {
	return &execProc{cmd: cmd, exited: make(chan struct{}), lost: make(chan struct{}), readerDone: make(chan struct{})}
}

// run relays until the process has exited and its output is drained.
func (p *execProc) run(ctx context.Context, ch *channel.Channel) *pb.ExitStatus {
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	var pumps sync.WaitGroup
	for i, f := range p.outs {
		pumps.Go(func() { p.pump(ch, f, i == 1) })
	}
	go p.readConsole(ch)

	select {
	case <-p.exited:
	case <-ctx.Done():
		p.hangup()
	case <-p.lost:
		p.hangup()
	}
	deadline := time.Now().Add(execDrainTimeout)
	for _, f := range p.outs {
		_ = f.SetReadDeadline(deadline)
	}
	pumps.Wait()
	return execExitStatus(p.cmd.ProcessState)
}

// finish waits (briefly) for the console to close its side after exit, so
// the reader goroutine ends, then releases the files.
func (p *execProc) finish(ch *channel.Channel) {
	p.closeStdin()
	if p.pty != nil {
		_ = p.pty.SetWriteDeadline(time.Now()) // a reader stuck writing input
	}
	_ = ch.SetReadDeadline(time.Now().Add(execLinger))
	<-p.readerDone
	_ = ch.SetReadDeadline(time.Time{})
	for _, f := range p.outs {
		_ = f.Close()
	}
}

// hangup ends the process group as a closed terminal would: SIGHUP, then
// SIGKILL if it is still there after execKillGrace.
func (p *execProc) hangup() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGHUP)
	t := time.NewTimer(execKillGrace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
}

// pump relays one output file. After the console stops taking output it
// keeps reading, so the process never blocks on a full pipe.
func (p *execProc) pump(ch *channel.Channel, f *os.File, stderr bool) {
	buf := make([]byte, execChunk)
	broken := false
	for {
		n, err := f.Read(buf)
		if n > 0 && !broken {
			m := &pb.ExecMsg{Body: &pb.ExecMsg_Stdout{Stdout: buf[:n]}}
			if stderr {
				m.Body = &pb.ExecMsg_Stderr{Stderr: buf[:n]}
			}
			broken = ch.WriteMsg(m) != nil
		}
		if err != nil {
			return // EOF; EIO from a pty whose other side is gone; the drain deadline
		}
	}
}

// readConsole applies what the console sends until it closes its side.
func (p *execProc) readConsole(ch *channel.Channel) {
	defer close(p.readerDone)
	for {
		var m pb.ExecMsg
		if err := ch.ReadMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				p.closeStdin() // nothing more will come
			} else {
				close(p.lost)
			}
			return
		}
		switch b := m.GetBody().(type) {
		case *pb.ExecMsg_Stdin:
			p.writeStdin(b.Stdin)
		case *pb.ExecMsg_StdinEof:
			p.closeStdin()
		case *pb.ExecMsg_Resize:
			p.resize(b.Resize)
		case *pb.ExecMsg_Signal:
			p.signal(b.Signal)
		default:
			p.log.Debug("exec: unexpected message from the console", "type", slog.AnyValue(b))
		}
	}
}

func (p *execProc) writeStdin(data []byte) {
	w := p.stdin
	if p.pty != nil {
		w = p.pty
	}
	if p.stdinBroken || w == nil {
		return
	}
	if _, err := w.Write(data); err != nil {
		// The process closed its input or exited; later input is dropped
		// but signals and resizes still apply.
		p.stdinBroken = true
	}
}

// closeStdin gives the process end of input. A terminal has no half-close:
// there the console sends Ctrl-D (0x04) like a user would.
func (p *execProc) closeStdin() {
	if p.stdin != nil {
		p.stdinOnce.Do(func() { _ = p.stdin.Close() })
	}
}

func (p *execProc) signal(name string) {
	sig, ok := execSignals[name]
	if !ok {
		p.log.Info("exec: unknown signal from the console", execLogSignal, name)
		return
	}
	if err := syscall.Kill(-p.signalGroup(), sig); err != nil {
		p.log.Debug("exec: signalling", execLogSignal, name, execLogErr, err)
	}
}

// execSignals are the signals a console may send.
var execSignals = map[string]syscall.Signal{
	"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP, "KILL": syscall.SIGKILL,
}

// execExitStatus reads how the process ended. A signal death reads as
// 128+n, as shells report it, with the signal's name.
func execExitStatus(ps *os.ProcessState) *pb.ExitStatus {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &pb.ExitStatus{Code: 128 + int32(ws.Signal()), Signal: execSignalName(ws.Signal())}
	}
	return &pb.ExitStatus{Code: int32(ps.ExitCode())}
}

// execStartMessage is what a shell prints when it cannot run a command:
// "nosuchcmd: command not found" (127), "./x: Permission denied" (126).
// With a tty the console's terminal is raw, so the line ends in CR LF.
func execStartMessage(open *pb.ExecOpen, code int32, err error) string {
	name := "shell"
	if argv := open.GetArgv(); len(argv) > 0 {
		name = argv[0]
	}
	var msg string
	switch {
	case code == 127 && !strings.Contains(name, "/"):
		msg = name + ": command not found"
	case code == 127:
		msg = name + ": No such file or directory"
	case errors.Is(err, fs.ErrPermission):
		msg = name + ": Permission denied"
	default:
		msg = name + ": " + err.Error()
	}
	if open.GetTty() {
		return msg + "\r\n"
	}
	return msg + "\n"
}

// execStartFailure is the status of a command that never ran: 127 when
// it does not exist, 126 when it cannot be executed, as shells say.
func execStartFailure(err error) *pb.ExitStatus {
	code := int32(126)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = 127
	}
	return &pb.ExitStatus{Code: code, Error: err.Error()}
}
