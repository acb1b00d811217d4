package console_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A hand-played sender: what a broken or hostile console could put on a
// push channel, and what the peer's receiver makes of it.

func entry(path string, dir bool, size uint64) *pb.FileMsg {
	return &pb.FileMsg{Body: &pb.FileMsg_Entry{Entry: &pb.FileEntry{Path: path, Dir: dir, Size: size, Mode: 0o644}}}
}

func data(s string) *pb.FileMsg { return &pb.FileMsg{Body: &pb.FileMsg_Data{Data: []byte(s)}} }

func end(content string) *pb.FileMsg {
	sum := sha256.Sum256([]byte(content))
	return &pb.FileMsg{Body: &pb.FileMsg_EndSha256{EndSha256: sum[:]}}
}

var done = &pb.FileMsg{Body: &pb.FileMsg_Done{Done: true}}

// sendRaw writes msgs on a push channel into target and returns the
// peer's answer.
func (p *channelPair) sendRaw(t *testing.T, target string, msgs ...*pb.FileMsg) error {
	t.Helper()
	ch := p.open(t, fileOpen(true, target))
	defer ch.Close()
	for _, m := range msgs {
		if err := ch.WriteMsg(m); err != nil {
			t.Fatalf("sending %v: %v", m, err)
		}
	}
	_ = ch.CloseWrite()
	var m pb.FileMsg
	if err := ch.ReadMsg(&m); err != nil {
		t.Fatalf("reading the peer's answer: %v", err)
	}
	if m.GetDone() {
		return nil
	}
	return catalog.ErrorFromPB(m.GetError())
}

func TestCopyRefusesADamagedFile(t *testing.T) {
	for name, msgs := range map[string][]*pb.FileMsg{
		"bad sha256":    {entry("bad.bin", false, 5), data("hello"), end("hellx"), done},
		"short":         {entry("bad.bin", false, 10), data("hello"), end("hello"), done},
		"long":          {entry("bad.bin", false, 3), data("hello"), end("hello"), done},
		"sender failed": {entry("bad.bin", false, 10), data("hello"), {Body: &pb.FileMsg_Error{Error: catalog.ErrorToPB(catalog.NewError(catalog.CodeInternal))}}},
		"cut short":     {entry("bad.bin", false, 10), data("hello")},
	} {
		t.Run(name, func(t *testing.T) {
			p := newChannelPair(t)
			dir := t.TempDir()
			err := p.sendRaw(t, dir, msgs...)
			if err == nil {
				t.Fatal("the peer accepted a damaged file")
			}
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}
			waitUntil(t, "ServeFiles to return", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				return len(p.fileErrs) == 1 && p.fileErrs[0] != nil
			})
		})
	}
}

func TestCopyRefusesPathsOutsideTheTarget(t *testing.T) {
	cases := map[string][]*pb.FileMsg{
		"dotdot root":     {entry("../evil", false, 1), data("x"), end("x"), done},
		"absolute root":   {entry("/tmp/evil", false, 1), data("x"), end("x"), done},
		"nested root":     {entry("a/evil", false, 1), data("x"), end("x"), done},
		"dot root":        {entry(".", true, 0), entry("./evil", false, 1), data("x"), end("x"), done},
		"dotdot inside":   {entry("x", true, 0), entry("x/../../evil", false, 1), data("x"), end("x"), done},
		"other root":      {entry("x", true, 0), entry("y/evil", false, 1), data("x"), end("x"), done},
		"empty element":   {entry("x", true, 0), entry("x//evil", false, 1), data("x"), end("x"), done},
		"through symlink": {entry("x", true, 0), entry("x/out/evil", false, 1), data("x"), end("x"), done},
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			p := newChannelPair(t)
			base := t.TempDir()
			target, outside := filepath.Join(base, "target"), filepath.Join(base, "outside")
			for _, d := range []string{target, outside, filepath.Join(target, "x")} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// A symlink already in the target must not lead the copy out.
			if err := os.Symlink(outside, filepath.Join(target, "x", "out")); err != nil {
				t.Fatal(err)
			}
			err := p.sendRaw(t, target, msgs...)
			if catalog.CodeOf(err) != catalog.CodeCopyBadPath {
				t.Errorf("answer %v, want invalid_argument", err)
			}
			_ = filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
				if err == nil && (strings.Contains(d.Name(), "evil") || strings.HasSuffix(d.Name(), ".part")) {
					t.Errorf("written: %s", path)
				}
				return nil
			})
		})
	}
}
