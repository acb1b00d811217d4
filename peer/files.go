package peer

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ServeFiles serves an accepted file channel (after Ready). A push receives
// the console's tree into open.path; a pull sends open.path (a file or a
// directory tree). A relative path, "~" or "~/..." is taken from the home
// directory of the user the peer runs as, as scp does; an empty path is
// that home directory. The tree format and the safety rules (no write
// outside the target, SHA-256 per file, symlinks skipped) are the channel
// package's. It closes the channel; the error is the copy's catalog error,
// whichever side failed.
func ServeFiles(ctx context.Context, ch *channel.Channel, open *pb.FileOpen) error {
	defer ch.Close()
	path := fileResolve(open.GetPath())
	var err error
	if open.GetPush() {
		_, err = channel.ReceiveTree(ctx, ch, path, channel.TreeOptions{})
	} else {
		_, err = channel.SendTree(ctx, ch, path, channel.TreeOptions{})
	}
	return err
}

// fileResolve makes a console-given path absolute against the home
// directory.
func fileResolve(p string) string {
	home := fileHome()
	switch {
	case p == "" || p == "~":
		return home
	case strings.HasPrefix(p, "~/"):
		return filepath.Join(home, p[2:])
	case filepath.IsAbs(p):
		return filepath.Clean(p)
	}
	return filepath.Join(home, p)
}

// fileHome is the peer user's home directory, or "/" when it has none.
func fileHome() string {
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return h
	}
	return "/"
}
