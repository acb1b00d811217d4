package channel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ReceiveTree receives a tree sent by SendTree into target, as cp -r does:
// into target/<name> when target is an existing directory, as target
// otherwise (its parent must exist). Every write goes through an os.Root
// opened on the destination directory, so no entry lands outside it, even
// through a symlink already there. Each file is written to a temporary name
// and renamed into place only when its size and SHA-256 match; a failed
// file leaves nothing behind. Files received before a failure stay.
func ReceiveTree(ctx context.Context, c *Channel, target string, opts TreeOptions) (TreeStats, error) {
	fired := watchCtx(ctx, c)
	r := &treeReceiver{c: c, opts: opts}
	err := r.receive(target)
	r.cleanup()
	switch {
	case err == nil:
		err = c.WriteMsg(&pb.FileMsg{Body: &pb.FileMsg_Done{Done: true}})
		_ = c.CloseWrite()
	case r.senderFailed:
		_ = c.WriteMsg(fileMsgError(err))
		_ = c.CloseWrite()
	default:
		// Tell the sender, then swallow what it still has in flight until
		// it has seen the answer and closed.
		_ = c.WriteMsg(fileMsgError(err))
		_ = c.CloseWrite()
		drain(c)
	}
	if fired() {
		return r.stats, ctx.Err()
	}
	return r.stats, err
}

type treeReceiver struct {
	c     *Channel
	opts  TreeOptions
	stats TreeStats
	total int64

	root         *os.Root
	name         string // the root entry's name on the wire
	dest         string // where it lands, inside root
	dirs         []recvDir
	tmp          string // temporary file being written, removed on failure
	senderFailed bool
}

// recvDir is a directory whose mode and mtime are applied at the end, when
// writing its children can no longer change them.
type recvDir struct {
	path  string
	mode  fs.FileMode
	mtime time.Time
}

func (r *treeReceiver) receive(target string) error {
	m, err := r.next()
	if err != nil {
		return err
	}
	root := m.GetEntry()
	if root == nil {
		return catalog.Errorf(catalog.CodeProtocol, "(the copy did not start with an entry)")
	}
	if err := checkEntryPath(root.GetPath()); err != nil || strings.Contains(root.GetPath(), "/") {
		return catalog.Errorf(codeBadPath, "(unsafe name %q for the copy)", root.GetPath())
	}
	if r.opts.RootName != "" && root.GetPath() != r.opts.RootName {
		return catalog.Errorf(codeBadPath, "(the sender named the copy %q, not %q as asked; nothing was written)", root.GetPath(), r.opts.RootName)
	}
	r.name, r.total = root.GetPath(), int64(root.GetSize())
	if err := r.openDest(filepath.Clean(target), root.GetDir()); err != nil {
		return err
	}
	if !root.GetDir() {
		if err := r.receiveFile(r.dest, root); err != nil {
			return err
		}
		return r.expectDone()
	}
	if err := r.mkdir(r.dest, root); err != nil {
		return err
	}
	for {
		m, err := r.next()
		if err != nil {
			return err
		}
		switch b := m.GetBody().(type) {
		case *pb.FileMsg_Entry:
			err = r.entry(b.Entry)
		case *pb.FileMsg_Done:
			return r.finishDirs()
		default:
			err = catalog.Errorf(catalog.CodeProtocol, "(%T where an entry was expected)", b)
		}
		if err != nil {
			return err
		}
	}
}

// openDest decides where the copy lands, like cp -r.
func (r *treeReceiver) openDest(target string, dir bool) error {
	parent, dest := filepath.Dir(target), filepath.Base(target)
	fi, err := os.Stat(target)
	switch {
	case err == nil && fi.IsDir():
		parent, dest = target, r.name
	case err == nil && dir:
		return catalog.Errorf(codeBadPath, "(%s exists and is not a directory)", target)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fsError(target, err)
	}
	r.dest = dest
	r.root, err = os.OpenRoot(parent)
	if err != nil {
		return fsError(parent, err)
	}
	return nil
}

// entry handles one entry below the root: it must stay under the root's
// name, with a safe path.
func (r *treeReceiver) entry(e *pb.FileEntry) error {
	rel, ok := strings.CutPrefix(e.GetPath(), r.name+"/")
	if err := checkEntryPath(e.GetPath()); err != nil || !ok {
		return catalog.Errorf(codeBadPath, "(unsafe path %q in the copy)", e.GetPath())
	}
	local := r.dest + "/" + rel
	if e.GetDir() {
		return r.mkdir(local, e)
	}
	return r.receiveFile(local, e)
}

// mkdir creates a directory owner-writable for now (its own mode may not
// let us add children); an existing directory is merged into.
func (r *treeReceiver) mkdir(p string, e *pb.FileEntry) error {
	if err := r.root.Mkdir(p, 0o700); errors.Is(err, fs.ErrExist) {
		fi, serr := r.root.Lstat(p)
		if serr != nil || !fi.IsDir() {
			return catalog.Errorf(codeBadPath, "(%s exists and is not a directory)", p)
		}
	} else if err != nil {
		return fsError("creating "+p, err)
	}
	r.stats.Dirs++
	r.dirs = append(r.dirs, recvDir{p, fs.FileMode(e.GetMode() & permMask), time.Unix(e.GetMtimeUnix(), 0)})
	return nil
}

// receiveFile writes one file's chunks to a temporary file next to p and
// renames it into place once size and SHA-256 check out.
func (r *treeReceiver) receiveFile(p string, e *pb.FileEntry) error {
	dir, _ := path.Split(p)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	r.tmp = dir + ".jumpmesh-" + hex.EncodeToString(rnd[:]) + ".part"
	f, err := r.root.OpenFile(r.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		r.tmp = ""
		return fsError("creating a file in "+path.Clean(dir+"."), err)
	}
	defer f.Close()
	h := sha256.New()
	var got uint64
	for {
		m, err := r.next()
		if err != nil {
			return err
		}
		switch b := m.GetBody().(type) {
		case *pb.FileMsg_Data:
			if got += uint64(len(b.Data)); got > e.GetSize() {
				return catalog.Errorf(codeIntegrity, "(%s: more data than the %d bytes announced)", p, e.GetSize())
			}
			if _, err := f.Write(b.Data); err != nil {
				return fsError("writing "+p, err)
			}
			h.Write(b.Data)
			r.stats.Bytes += int64(len(b.Data))
			r.opts.progress(r.stats.Bytes, r.total)
		case *pb.FileMsg_EndSha256:
			if got != e.GetSize() || !bytes.Equal(b.EndSha256, h.Sum(nil)) {
				return catalog.Errorf(codeIntegrity, "(%s: SHA-256 mismatch, the file was damaged in transit and was not written)", p)
			}
			return r.commit(f, p, e)
		default:
			return catalog.Errorf(catalog.CodeProtocol, "(%T inside the data of %s)", b, p)
		}
	}
}

func (r *treeReceiver) commit(f *os.File, p string, e *pb.FileEntry) error {
	if err := f.Chmod(fs.FileMode(e.GetMode() & permMask)); err != nil {
		return fsError("writing "+p, err)
	}
	if err := f.Close(); err != nil {
		return fsError("writing "+p, err)
	}
	mtime := time.Unix(e.GetMtimeUnix(), 0)
	if err := r.root.Chtimes(r.tmp, mtime, mtime); err != nil {
		return fsError("writing "+p, err)
	}
	if err := r.root.Rename(r.tmp, p); err != nil {
		return fsError("writing "+p, err)
	}
	r.tmp = ""
	r.stats.Files++
	return nil
}

// finishDirs applies directory modes and mtimes, deepest first.
func (r *treeReceiver) finishDirs() error {
	for i := len(r.dirs) - 1; i >= 0; i-- {
		d := r.dirs[i]
		if err := r.root.Chmod(d.path, d.mode); err != nil {
			return fsError("setting the mode of "+d.path, err)
		}
		if err := r.root.Chtimes(d.path, d.mtime, d.mtime); err != nil {
			return fsError("setting the time of "+d.path, err)
		}
	}
	return nil
}

func (r *treeReceiver) expectDone() error {
	m, err := r.next()
	if err != nil {
		return err
	}
	if !m.GetDone() {
		return catalog.Errorf(catalog.CodeProtocol, "(%T after a single file)", m.GetBody())
	}
	return nil
}

// next reads one message; the sender's own failure ends the copy with its
// error.
func (r *treeReceiver) next() (*pb.FileMsg, error) {
	var m pb.FileMsg
	if err := r.c.ReadMsg(&m); err != nil {
		return nil, catalog.Errorf(catalog.CodeSessionInternal, "(the copy was cut short: %w)", err)
	}
	if e := m.GetError(); e != nil {
		r.senderFailed = true
		return nil, catalog.ErrorFromPB(e)
	}
	return &m, nil
}

func (r *treeReceiver) cleanup() {
	if r.root == nil {
		return
	}
	if r.tmp != "" {
		_ = r.root.Remove(r.tmp)
	}
	_ = r.root.Close()
}
