package peer

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// execDefaultPath is the PATH of a session when the peer has none (a
// daemon started with an empty environment).
const execDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execUserInfo is who the process runs as: the user the peer runs as.
type execUserInfo struct {
	name, uid, home, shell string
}

// execStart starts the process of an ExecOpen.
func execStart(open *pb.ExecOpen, opts ExecOptions) (*execProc, error) {
	execSignalsAsOnATerminal()
	u := execCurrentUser()
	argv := open.GetArgv()
	if len(argv) == 0 {
		argv = []string{u.shell, "-l"}
	}
	env := execEnv(u, open, opts)
	path, err := execLookPath(argv[0], env)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: u.home}
	if open.GetTty() {
		return execStartPTY(cmd, open)
	}
	return execStartPipes(cmd)
}

// execStartPipes starts cmd in its own process group (so a signal reaches
// its children too) with stdout and stderr kept apart. The peer's ends of
// the pipes are pollable, so reads honour deadlines.
func execStartPipes(cmd *exec.Cmd) (*execProc, error) {
	var files [6]*os.File // stdin r/w, stdout r/w, stderr r/w
	for i := 0; i < len(files); i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			execCloseAll(files[:i]...)
			return nil, fmt.Errorf("creating pipes: %w", err)
		}
		files[i], files[i+1] = r, w
	}
	inR, inW, outR, outW, errR, errW := files[0], files[1], files[2], files[3], files[4], files[5]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Start()
	execCloseAll(inR, outW, errW) // the child has its copies
	if err != nil {
		execCloseAll(inW, outR, errR)
		return nil, err
	}
	p := newExecProc(cmd)
	p.stdin, p.outs = inW, []*os.File{outR, errR}
	return p, nil
}

// execStartPTY starts cmd as a session leader with a new pseudo-terminal
// as its controlling terminal, sized as the console asked.
func execStartPTY(cmd *exec.Cmd, open *pb.ExecOpen) (*execProc, error) {
	master, tty, err := execOpenPTY()
	if err != nil {
		return nil, fmt.Errorf("opening a pseudo-terminal: %w", err)
	}
	rows, cols := open.GetRows(), open.GetCols()
	if rows == 0 || cols == 0 {
		rows, cols = 24, 80
	}
	_ = unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
	_ = tty.Close() // only the child holds the terminal: its exit ends our reads
	if err != nil {
		_ = master.Close()
		return nil, err
	}
	p := newExecProc(cmd)
	p.pty, p.outs = master, []*os.File{master}
	return p, nil
}

// execOpenPTY opens a pseudo-terminal pair. creack/pty hands back a master
// switched to blocking mode (it calls Fd), where a read can neither time
// out nor be interrupted by Close; a non-blocking duplicate goes through
// Go's poller instead.
func execOpenPTY() (master, tty *os.File, err error) {
	m, tty, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = m.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		_ = tty.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), tty, nil
}

// resize applies a console's window size to the terminal; the kernel
// tells the foreground job (SIGWINCH).
func (p *execProc) resize(ws *pb.WindowSize) {
	if p.pty == nil || ws.GetRows() == 0 || ws.GetCols() == 0 {
		return
	}
	sz := &unix.Winsize{Row: uint16(ws.GetRows()), Col: uint16(ws.GetCols())}
	if sc, err := p.pty.SyscallConn(); err == nil {
		_ = sc.Control(func(fd uintptr) { _ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, sz) })
	}
}

// signalGroup is the process group a console's signal goes to: the
// terminal's foreground job with a tty (what Ctrl-C would reach), the
// process's own group otherwise.
func (p *execProc) signalGroup() int {
	pgid := p.cmd.Process.Pid
	if p.pty == nil {
		return pgid
	}
	if sc, err := p.pty.SyscallConn(); err == nil {
		_ = sc.Control(func(fd uintptr) {
			if fg, err := unix.IoctlGetInt(int(fd), unix.TIOCGPGRP); err == nil && fg > 0 {
				pgid = fg
			}
		})
	}
	return pgid
}

func execSignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return strconv.Itoa(int(sig))
}

// execCurrentUser finds the name, home and login shell of the user the
// peer runs as. The shell is $SHELL, else /etc/passwd's, else /bin/sh; a
// missing home becomes "/".
func execCurrentUser() execUserInfo {
	u := execUserInfo{home: "/", shell: "/bin/sh"}
	if cu, err := user.Current(); err == nil {
		u.name, u.uid = cu.Username, cu.Uid
		if fi, err := os.Stat(cu.HomeDir); err == nil && fi.IsDir() {
			u.home = cu.HomeDir
		}
	}
	if s := os.Getenv("SHELL"); s != "" {
		u.shell = s
	} else if s := execPasswdShell(u.uid); s != "" {
		u.shell = s
	}
	return u
}

func execPasswdShell(uid string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[2] == uid {
			return fields[6]
		}
	}
	return ""
}

// execEnv is a login-like environment: a clean base (not the daemon's),
// then what the console asked for, then the peer's own extras, later
// entries winning.
func execEnv(u execUserInfo, open *pb.ExecOpen, opts ExecOptions) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = execDefaultPath
	}
	env := []string{"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name, "SHELL=" + u.shell, "PATH=" + path}
	for _, k := range []string{"LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if open.GetTty() {
		term := open.GetTerm()
		if term == "" {
			term = "xterm"
		}
		env = append(env, "TERM="+term)
	}
	keys := make([]string, 0, len(open.GetEnv()))
	for k := range open.GetEnv() {
		if k != "" && !strings.ContainsAny(k, "=\x00") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+open.GetEnv()[k])
	}
	return append(env, opts.Env...)
}

// execLookPath finds name in the session's PATH (not the daemon's).
func execLookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w", name, exec.ErrNotFound)
}

func execCloseAll(files ...*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// execTerminalSignals are the signals a session's processes get from a
// terminal or from the console (a hang-up, Ctrl-C, Ctrl-\).
var execTerminalSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT}

// execSignalSink takes the signals execSignalsAsOnATerminal asks for; it
// is never read, so the peer goes on ignoring them.
var execSignalSink = make(chan os.Signal, 1)

// execSignalsAsOnATerminal makes the terminal signals the peer process
// was started with ignored (nohup leaves SIGHUP ignored, a shell's
// background job SIGINT and SIGQUIT) reach its sessions' processes as
// they would on a terminal: an ignored signal is inherited across exec,
// so a session whose console went away ignored its SIGHUP and was killed
// execKillGrace later, and a console's INT did nothing. Asking for such a
// signal installs the Go runtime's handler in place of "ignore", and a
// child starts with the handlers the runtime installed reset to the
// default; the peer itself still ignores them (nothing reads the sink).
func execSignalsAsOnATerminal() {
	for _, sig := range execTerminalSignals {
		if signal.Ignored(sig) {
			signal.Notify(execSignalSink, sig)
		}
	}
}
