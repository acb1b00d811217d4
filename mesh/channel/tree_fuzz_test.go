package channel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// FuzzReceiveTree feeds arbitrary bytes, as a sender would, to the
// receiving side of a copy (what a technician's console runs on `cp
// PEER:PATH DIR`, and a peer on a push): whatever the sender says, nothing
// lands outside the target directory, the root entry carries the name the
// receiver chose, and nothing panics.
func FuzzReceiveTree(f *testing.F) {
	for _, seed := range treeSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		base := t.TempDir()
		target := filepath.Join(base, "in")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		// A symlink already in the target that points outside it.
		if err := os.Symlink(base, filepath.Join(target, "escape")); err != nil {
			t.Fatal(err)
		}
		c := newChannel(&bytesStream{r: bytes.NewReader(wire)})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = ReceiveTree(ctx, c, target, TreeOptions{RootName: "asked"})

		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			switch {
			case rel == "." || rel == "in" || rel == filepath.Join("in", "escape"):
				return nil
			case !strings.HasPrefix(rel, "in"+string(filepath.Separator)):
				t.Fatalf("the copy wrote %s, outside the target", rel)
			case !strings.HasPrefix(rel, filepath.Join("in", "asked")):
				t.Fatalf("the copy wrote %s, not under the name the receiver chose", rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// treeSeeds are well-formed and hostile sender streams: a file, a tree, a
// root named otherwise, paths climbing out, a damaged file.
func treeSeeds() [][]byte {
	data := []byte("hello\n")
	sum := sha256.Sum256(data)
	entry := func(p string, dir bool, size int) *pb.FileMsg {
		return &pb.FileMsg{Body: &pb.FileMsg_Entry{Entry: &pb.FileEntry{Path: p, Dir: dir, Mode: 0o644, Size: uint64(size), MtimeUnix: 1}}}
	}
	chunk := &pb.FileMsg{Body: &pb.FileMsg_Data{Data: data}}
	end := &pb.FileMsg{Body: &pb.FileMsg_EndSha256{EndSha256: sum[:]}}
	done := &pb.FileMsg{Body: &pb.FileMsg_Done{Done: true}}
	streams := [][]*pb.FileMsg{
		{entry("asked", false, len(data)), chunk, end, done},
		{entry("asked", true, 0), entry("asked/a", false, len(data)), chunk, end, entry("asked/d", true, 0), done},
		{entry(".bashrc", false, len(data)), chunk, end, done},
		{entry("asked", true, 0), entry("asked/../../x", false, len(data)), chunk, end, done},
		{entry("asked", true, 0), entry("asked/../escape/x", false, len(data)), chunk, end, done},
		{entry("asked", false, 3), chunk, end, done},
		{entry("/etc/asked", false, len(data)), chunk, end, done},
	}
	var out [][]byte
	for _, msgs := range streams {
		var b []byte
		for _, m := range msgs {
			body, _ := proto.Marshal(m)
			b = binary.AppendUvarint(b, uint64(len(body)))
			b = append(b, body...)
		}
		out = append(out, b)
	}
	return append(out, nil, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
}

// bytesStream is a libp2p stream that reads a fixed byte string and
// discards what is written: enough for a receiver, which only reads the
// sender's messages and writes its answer.
type bytesStream struct {
	network.Stream // not used by the receiver; a call would panic
	r              *bytes.Reader
}

func (s *bytesStream) Read(p []byte) (int, error)                   { return s.r.Read(p) }
func (s *bytesStream) Write(p []byte) (int, error)                  { return len(p), nil }
func (s *bytesStream) Close() error                                 { return nil }
func (s *bytesStream) CloseWrite() error                            { return nil }
func (s *bytesStream) CloseRead() error                             { return nil }
func (s *bytesStream) Reset() error                                 { return nil } // the bytes end anyway
func (s *bytesStream) SetDeadline(time.Time) error                  { return nil }
func (s *bytesStream) SetReadDeadline(time.Time) error              { return nil }
func (s *bytesStream) SetWriteDeadline(time.Time) error             { return nil }
func (s *bytesStream) ResetWithError(network.StreamErrorCode) error { return s.Reset() }

var _ io.ReadWriter = (*bytesStream)(nil)
