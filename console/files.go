package console

import (
	"context"
	"os"
	"path"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
)

// Push copies the local file or directory tree at localPath into the
// peer's path named by the channel's FileOpen{push: true}: into it when it
// is a directory, as it otherwise, like cp -r. progress (may be nil) sees
// bytes sent and the total. The error is the first failure of either side,
// as a catalog error: a file that fails its size or SHA-256 check on the
// peer is not written there. Symlinks and special files inside the tree
// are skipped (see the channel package for the tree format and its safety
// rules). Push closes ch.
func Push(ctx context.Context, ch *channel.Channel, localPath string, progress func(done, total int64)) error {
	defer ch.Close()
	_, err := channel.SendTree(ctx, ch, localPath, channel.TreeOptions{Progress: progress})
	return err
}

// Pull copies the peer's file or directory tree at remotePath (the path
// of the channel's FileOpen{push: false}) to localTarget: into it when it
// is an existing directory, as it otherwise. Nothing is written outside
// localTarget whatever the peer sends, and a file whose size or SHA-256
// does not match leaves nothing behind. Into an existing directory the
// copy is named by the console, after remotePath's base name, and a peer
// that names it otherwise is refused (a compromised peer must not choose
// to write DIR/.bashrc); when remotePath names the peer's home directory
// or a parent, whose name only the peer knows, the target must be a new
// path. Pull closes ch.
func Pull(ctx context.Context, ch *channel.Channel, remotePath, localTarget string, progress func(done, total int64)) error {
	defer ch.Close()
	if err := CheckPull(remotePath, localTarget); err != nil {
		_ = ch.Reset()
		return err
	}
	_, err := channel.ReceiveTree(ctx, ch, localTarget, channel.TreeOptions{Progress: progress, RootName: RemoteBaseName(remotePath)})
	return err
}

// CheckPull refuses, before anything is asked of the peer, a pull whose
// copy the console could not name: remotePath names the peer's home
// directory or a parent and localTarget is an existing directory.
func CheckPull(remotePath, localTarget string) error {
	if RemoteBaseName(remotePath) != "" {
		return nil
	}
	if fi, err := os.Stat(localTarget); err == nil && fi.IsDir() {
		return catalog.Errorf(catalog.CodeCopyBadPath, "(%q names the peer's home directory or a parent of it, whose name only the peer knows; "+
			"give a local path to create instead of the existing directory %s)", remotePath, localTarget)
	}
	return nil
}

// RemoteBaseName is the base name of the root a pull of remotePath sends,
// by the peer's rule for paths (peer.ServeFiles: "", "~" and "~/..." are
// in the home directory of the peer's user, a relative path too), or ""
// when only the peer knows it: the home directory itself, "/", or a
// parent ("..").
func RemoteBaseName(remotePath string) string {
	p := remotePath
	if p == "~" {
		p = ""
	} else if rest, ok := strings.CutPrefix(p, "~/"); ok {
		p = rest
	}
	if p == "" {
		return ""
	}
	base := path.Base(path.Clean(p))
	if base == "." || base == ".." || base == "/" {
		return ""
	}
	return base
}
