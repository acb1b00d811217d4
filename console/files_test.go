package console_test

import (
	"context"
	"crypto/sha256"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func fileOpen(push bool, path string) *pb.ChannelOpen {
	return &pb.ChannelOpen{Kind: &pb.ChannelOpen_File{File: &pb.FileOpen{Push: push, Path: path}}}
}

func (p *channelPair) push(t *testing.T, local, remote string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return console.Push(ctx, p.open(t, fileOpen(true, remote)), local, nil)
}

func (p *channelPair) pull(t *testing.T, remote, local string, progress func(done, total int64)) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return console.Pull(ctx, p.open(t, fileOpen(false, remote)), remote, local, progress)
}

// writeRandom writes size pseudo-random bytes with mode and an old mtime.
func writeRandom(t *testing.T, path string, size int, mode fs.FileMode) {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(size), byte(mode)})
	_, _ = r.Read(data)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	old := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// sameTree checks that b holds the same dirs and files as a: content (by
// SHA-256), permission bits and mtimes. Symlinks of a are not expected in b.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		q := filepath.Join(b, rel)
		ai, _ := d.Info()
		bi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		n++
		if ai.Mode() != bi.Mode() || !ai.ModTime().Truncate(time.Second).Equal(bi.ModTime()) {
			t.Errorf("%s: mode %v mtime %v, want %v %v", rel, bi.Mode(), bi.ModTime(), ai.Mode(), ai.ModTime())
		}
		if d.Type().IsRegular() && fileSum(t, p) != fileSum(t, q) {
			t.Errorf("%s: content differs", rel)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walking %s: %v (%d entries)", a, err, n)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	ai, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	bi, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	if ai.Mode() != bi.Mode() || !ai.ModTime().Equal(bi.ModTime()) || fileSum(t, a) != fileSum(t, b) {
		t.Errorf("%s differs from %s: mode %v/%v, mtime %v/%v", b, a, bi.Mode(), ai.Mode(), bi.ModTime(), ai.ModTime())
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func TestCopyLargeFileBothWays(t *testing.T) {
	p := newChannelPair(t)
	src, peerDir, back := t.TempDir(), t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "big.bin"), 50<<20, 0o640)

	if err := p.push(t, filepath.Join(src, "big.bin"), peerDir); err != nil {
		t.Fatalf("push: %v", err)
	}
	sameFile(t, filepath.Join(src, "big.bin"), filepath.Join(peerDir, "big.bin"))

	var last, total int64
	progress := func(done, all int64) { last, total = done, all }
	if err := p.pull(t, filepath.Join(peerDir, "big.bin"), filepath.Join(back, "copy.bin"), progress); err != nil {
		t.Fatalf("pull: %v", err)
	}
	sameFile(t, filepath.Join(src, "big.bin"), filepath.Join(back, "copy.bin"))
	if last != 50<<20 || total != 50<<20 {
		t.Errorf("progress ended at %d of %d", last, total)
	}
}

func TestCopyTreeBothWays(t *testing.T) {
	p := newChannelPair(t)
	src := filepath.Join(t.TempDir(), "proj")
	for _, d := range []string{"proj", "proj/bin", "proj/sub", "proj/sub/deeper", "proj/empty"} {
		if err := os.Mkdir(filepath.Join(filepath.Dir(src), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeRandom(t, filepath.Join(src, "secret.txt"), 1000, 0o600)
	writeRandom(t, filepath.Join(src, "bin/run.sh"), 70_000, 0o755)
	writeRandom(t, filepath.Join(src, "sub/deeper/data"), 700_000, 0o644)
	writeRandom(t, filepath.Join(src, "sub/zero"), 0, 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(src, "empty"), 0o700)
	_ = os.Chmod(filepath.Join(src, "sub/deeper"), 0o750)
	old := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, d := range []string{"sub/deeper", "sub", "bin", "empty", "."} {
		_ = os.Chtimes(filepath.Join(src, d), old, old)
	}

	peerDir := t.TempDir()
	if err := p.push(t, src, peerDir); err != nil {
		t.Fatalf("push: %v", err)
	}
	sameTree(t, src, filepath.Join(peerDir, "proj")) // into an existing dir, under its name
	if _, err := os.Lstat(filepath.Join(peerDir, "proj/link")); err == nil {
		t.Error("a symlink was copied")
	}

	back := filepath.Join(t.TempDir(), "again") // does not exist: the tree becomes it
	if err := p.pull(t, filepath.Join(peerDir, "proj"), back, nil); err != nil {
		t.Fatalf("pull: %v", err)
	}
	sameTree(t, src, back)
}

func TestPullOfAMissingPathFails(t *testing.T) {
	p := newChannelPair(t)
	dst := filepath.Join(t.TempDir(), "x")
	err := p.pull(t, "/nonexistent/jumpmesh/file", dst, nil)
	if catalog.CodeOf(err) != catalog.CodeCopyNotFound || !strings.Contains(err.Error(), "/nonexistent/jumpmesh/file") {
		t.Errorf("pull of a missing path: %v; want copy_not_found naming the path", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a missing source created the target")
	}
}

// TestMissingPathsOfACopyAreNotFound: a missing local source (push), and a
// pull into a directory that does not exist, are copy_not_found naming the
// path; nothing is written.
func TestMissingPathsOfACopyAreNotFound(t *testing.T) {
	p := newChannelPair(t)
	missing := filepath.Join(t.TempDir(), "no-such-file")
	peerDir := t.TempDir()
	err := p.push(t, missing, peerDir)
	if catalog.CodeOf(err) != catalog.CodeCopyNotFound || !strings.Contains(err.Error(), missing) {
		t.Errorf("push of a missing local file: %v; want copy_not_found naming %s", err, missing)
	}
	if names := listDir(t, peerDir); len(names) != 0 {
		t.Errorf("the peer's directory holds %v", names)
	}

	src := filepath.Join(t.TempDir(), "f")
	writeRandom(t, src, 10, 0o644)
	noDir := filepath.Join(t.TempDir(), "no-such-dir")
	err = p.push(t, src, filepath.Join(noDir, "f"))
	if catalog.CodeOf(err) != catalog.CodeCopyNotFound || !strings.Contains(err.Error(), noDir) {
		t.Errorf("push into a missing directory: %v; want copy_not_found naming %s", err, noDir)
	}
}

func TestPushOntoAFileWithADirectoryFails(t *testing.T) {
	p := newChannelPair(t)
	src, peerDir := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 10, 0o644)
	writeRandom(t, filepath.Join(peerDir, "plain"), 10, 0o644)
	err := p.push(t, src, filepath.Join(peerDir, "plain"))
	if catalog.CodeOf(err) != catalog.CodeCopyBadPath {
		t.Errorf("pushing a directory onto a file: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(peerDir, "plain")); len(data) != 10 {
		t.Error("the file was touched")
	}
}

// listDir names what dir holds, temporary files included.
func listDir(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
