package console

import (
	"context"

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

// Pull copies the peer's file or directory tree named by the channel's
// FileOpen{push: false} to localTarget: into it when it is an existing
// directory, as it otherwise. Nothing is written outside localTarget
// whatever the peer sends, and a file whose size or SHA-256 does not match
// leaves nothing behind. Pull closes ch.
func Pull(ctx context.Context, ch *channel.Channel, localTarget string, progress func(done, total int64)) error {
	defer ch.Close()
	_, err := channel.ReceiveTree(ctx, ch, localTarget, channel.TreeOptions{Progress: progress})
	return err
}
