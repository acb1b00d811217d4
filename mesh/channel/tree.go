package channel

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ChunkSize is the largest FileMsg.data chunk, chosen by BenchmarkCopy in
// the console package (64 MiB pushed, 4 runs, MB/s): 64 KiB 367–425,
// 256 KiB 410–447, 1 MiB 376–426. The copy is bound by SHA-256 on both
// sides and encryption, not by framing; 256 KiB is at the top and keeps a
// message (which the receiver holds whole) small.
const ChunkSize = 256 << 10

// drainTimeout bounds how long a side that failed keeps reading (and
// discarding) what the other side still sends, so that side sees the
// failure instead of a reset.
const drainTimeout = 10 * time.Second

// permMask keeps the permission bits of a mode. Set-user-ID, set-group-ID
// and sticky bits are not copied (as cp without -p): a technician's copy
// must not create set-user-ID programs on a host by accident.
const permMask = 0o777

// Catalog codes of file copies; the detail says exactly what happened.
const (
	codeBadPath   = catalog.CodeCopyBadPath  // unsafe or unusable path
	codeNotFound  = catalog.CodeCopyNotFound // a path that does not exist
	codeIntegrity = catalog.CodeCopyDamaged  // SHA-256 or size mismatch
	codeIO        = catalog.CodeInternal     // a local read or write failed
)

// TreeOptions tune one copy.
type TreeOptions struct {
	// Progress, when set, is called after each chunk with the bytes of file
	// data done so far and the total announced by the sender.
	Progress func(done, total int64)
	// RootName, on the receiving side, is the name the receiver decided
	// for the copy's root (the base name of the path it asked for): the
	// sender's root entry must carry it, else nothing is written. It
	// matters when the target is an existing directory, where the root
	// lands as target/<name>: a sender free to choose would pick
	// ".bashrc" or ".ssh". Empty accepts the sender's name, for a receiver
	// whose sender names the path anyway (the peer receiving a push).
	RootName string
}

// TreeStats describe a finished (or failed) copy.
type TreeStats struct {
	Files, Dirs int
	Bytes       int64
	// Skipped lists the sender's symlinks and special files, which are
	// never copied (relative, slash-separated paths).
	Skipped []string
}

func (o TreeOptions) progress(done, total int64) {
	if o.Progress != nil {
		o.Progress(done, total)
	}
}

// checkEntryPath reports whether p is a safe relative path of a copy: slash
// separated, not absolute, without empty, "." or ".." elements and without
// NUL. Everything a receiver writes goes through it and through os.Root,
// which also refuses symlinks that lead out of the target.
func checkEntryPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return catalog.Errorf(codeBadPath, "(unsafe path %q in the copy)", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." {
			return catalog.Errorf(codeBadPath, "(unsafe path %q in the copy)", p)
		}
	}
	return nil
}

// fsError gives a local file system error its catalog code.
func fsError(what string, err error) error {
	var me *catalog.Error
	if errors.As(err, &me) {
		return err
	}
	if errors.Is(err, fs.ErrNotExist) {
		// The path the system names (the one missing), not what was being
		// done: "no such file or directory: /srv/nosuch".
		p := what
		var pe *fs.PathError
		if errors.As(err, &pe) {
			p = pe.Path
		}
		return &catalog.Error{Code: codeNotFound, Detail: "(no such file or directory: " + p + ")", Err: err}
	}
	var errno syscall.Errno
	if errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, fs.ErrExist) || errors.Is(err, os.ErrInvalid) ||
		!errors.As(err, &errno) {
		// Errors without an errno come from os.Root refusing a path (one
		// that escapes through a symlink) or from the path itself.
		return catalog.Errorf(codeBadPath, "(%s: %w)", what, err)
	}
	return catalog.Errorf(codeIO, "(%s: %w)", what, err)
}

// fileMsgError wraps a catalog error as a FileMsg.
func fileMsgError(err error) *pb.FileMsg {
	return &pb.FileMsg{Body: &pb.FileMsg_Error{Error: catalog.ErrorToPB(err)}}
}

// drain reads and discards until the other side closes, at most
// drainTimeout, after this side has said it failed.
func drain(c *Channel) {
	_ = c.SetReadDeadline(time.Now().Add(drainTimeout))
	var m pb.FileMsg
	for c.ReadMsg(&m) == nil {
	}
}

// watchCtx resets the channel when ctx ends; the returned stop reports
// whether that happened.
func watchCtx(ctx context.Context, c *Channel) (stop func() bool) {
	s := context.AfterFunc(ctx, func() { _ = c.Reset() })
	return func() bool { return !s() }
}
