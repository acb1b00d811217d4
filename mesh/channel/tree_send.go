package channel

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// SendTree sends the file or directory tree at path on c (the sending half
// of a copy, see doc.go) and waits for the receiver's verdict. Symlinks and
// special files inside a directory are skipped and listed in the stats; a
// symlink given as path itself is followed. The receiver's failure comes
// back as its catalog error.
func SendTree(ctx context.Context, c *Channel, path string, opts TreeOptions) (TreeStats, error) {
	fired := watchCtx(ctx, c)
	s := &treeSender{c: c, opts: opts, ack: make(chan error, 1)}
	go func() { s.ack <- readVerdict(c) }()

	err := s.send(path)
	early := s.acked // the receiver gave up while we were sending
	switch {
	case err == nil:
		err = c.WriteMsg(&pb.FileMsg{Body: &pb.FileMsg_Done{Done: true}})
	case !early:
		_ = c.WriteMsg(fileMsgError(err))
	}
	_ = c.CloseWrite()
	verdict := s.waitVerdict()
	if fired() {
		return s.stats, ctx.Err()
	}
	if err == nil || early {
		// The receiver's word wins: it knows whether the files landed.
		return s.stats, verdict
	}
	return s.stats, err
}

type treeSender struct {
	c     *Channel
	opts  TreeOptions
	stats TreeStats
	total int64
	buf   []byte

	ack     chan error // the receiver's verdict, once
	acked   bool
	verdict error
}

// sendItem is one entry of a directory tree, found by the walk.
type sendItem struct {
	local, wire string
	info        fs.FileInfo
}

// CheckSource reports, as a catalog error, whether path can be sent: it
// exists (copy_not_found otherwise) and is a regular file or a directory
// other than the root. A console checks its local source with it before it
// asks for a grant; SendTree checks again.
func CheckSource(path string) error {
	_, _, err := checkSource(path)
	return err
}

func checkSource(path string) (string, fs.FileInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, fsError(path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", nil, fsError("reading "+abs, err)
	}
	switch {
	case filepath.Base(abs) == string(filepath.Separator):
		return "", nil, catalog.Errorf(codeBadPath, "(cannot copy the root directory)")
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return "", nil, catalog.Errorf(codeBadPath, "(%s is not a regular file or a directory)", abs)
	}
	return abs, fi, nil
}

func (s *treeSender) send(path string) error {
	path, fi, err := checkSource(path)
	if err != nil {
		return err
	}
	name := filepath.Base(path)
	if fi.Mode().IsRegular() {
		s.total = fi.Size()
		return s.sendFile(path, name)
	}
	items, err := s.walk(path, name)
	if err != nil {
		return err
	}
	if err := s.sendEntry(name, fi, true); err != nil {
		return err
	}
	for _, it := range items {
		if it.info.IsDir() {
			err = s.sendEntry(it.wire, it.info, true)
		} else {
			err = s.sendFile(it.local, it.wire)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walk lists the tree under root, parents before children, and sums the
// sizes so the receiver can show progress against a total.
func (s *treeSender) walk(root, name string) ([]sendItem, error) {
	var items []sendItem
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fsError("reading "+p, err)
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		wire := name + "/" + filepath.ToSlash(rel)
		if !d.IsDir() && !d.Type().IsRegular() {
			s.stats.Skipped = append(s.stats.Skipped, wire)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fsError("reading "+p, err)
		}
		if !d.IsDir() {
			s.total += info.Size()
		}
		items = append(items, sendItem{local: p, wire: wire, info: info})
		return nil
	})
	return items, err
}

func (s *treeSender) sendEntry(wire string, fi fs.FileInfo, dir bool) error {
	e := &pb.FileEntry{Path: wire, Mode: uint32(fi.Mode().Perm()), Dir: dir, MtimeUnix: fi.ModTime().Unix()}
	if dir {
		// A directory announces the bytes of the whole tree, for progress;
		// only the root's figure is used.
		e.Size = uint64(s.total)
		s.stats.Dirs++
	} else {
		e.Size = uint64(fi.Size())
	}
	return s.c.WriteMsg(&pb.FileMsg{Body: &pb.FileMsg_Entry{Entry: e}})
}

// sendFile sends one file: its entry, sized by the open file so the data
// matches what was announced, then chunks and the SHA-256 of exactly them.
func (s *treeSender) sendFile(local, wire string) error {
	f, err := os.Open(local)
	if err != nil {
		return fsError("reading "+local, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fsError("reading "+local, err)
	}
	if err := s.sendEntry(wire, fi, false); err != nil {
		return err
	}
	if s.buf == nil {
		s.buf = make([]byte, ChunkSize)
	}
	h := sha256.New()
	for left := fi.Size(); left > 0; {
		if err := s.checkVerdict(); err != nil {
			return err
		}
		n, err := io.ReadFull(f, s.buf[:min(int64(len(s.buf)), left)])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return catalog.Errorf(codeIO, "(%s shrank while it was being copied)", local)
		} else if err != nil {
			return fsError("reading "+local, err)
		}
		h.Write(s.buf[:n])
		if err := s.c.WriteMsg(&pb.FileMsg{Body: &pb.FileMsg_Data{Data: s.buf[:n]}}); err != nil {
			return err
		}
		left -= int64(n)
		s.stats.Bytes += int64(n)
		s.opts.progress(s.stats.Bytes, s.total)
	}
	s.stats.Files++
	return s.c.WriteMsg(&pb.FileMsg{Body: &pb.FileMsg_EndSha256{EndSha256: h.Sum(nil)}})
}

// checkVerdict returns the receiver's error if it already gave up, so the
// sender stops instead of streaming the rest into the void.
func (s *treeSender) checkVerdict() error {
	if s.acked {
		return s.verdict
	}
	select {
	case v := <-s.ack:
		s.acked, s.verdict = true, v
		if v == nil {
			v = catalog.Errorf(catalog.CodeProtocol, "(the receiver finished before the copy did)")
			s.verdict = v
		}
		return v
	default:
		return nil
	}
}

func (s *treeSender) waitVerdict() error {
	if !s.acked {
		s.acked, s.verdict = true, <-s.ack
	}
	return s.verdict
}

// readVerdict reads the receiver's one answer: done, or its error.
func readVerdict(c *Channel) error {
	var m pb.FileMsg
	if err := c.ReadMsg(&m); err != nil {
		return catalog.Errorf(catalog.CodeSessionInternal, "(the copy ended without the receiver's answer: %w)", err)
	}
	switch b := m.GetBody().(type) {
	case *pb.FileMsg_Done:
		return nil
	case *pb.FileMsg_Error:
		return catalog.ErrorFromPB(b.Error)
	default:
		return catalog.Errorf(catalog.CodeProtocol, "(the receiver answered with %T)", b)
	}
}
