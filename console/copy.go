package console

import (
	"context"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Copy is one copy between the console and a peer, like cp -r.
type Copy struct {
	// Push copies Local to the peer's Remote; otherwise the peer's Remote
	// to Local.
	Push          bool
	Local, Remote string
	// Progress, when set, sees bytes copied and the total.
	Progress func(done, total int64)
}

// Check refuses, before a grant is asked for, a copy that cannot be made:
// a local source that is missing or unreadable (push), or a pull whose
// copy the console could not name (CheckPull).
func (cp Copy) Check() error {
	if cp.Push {
		return channel.CheckSource(cp.Local)
	}
	return CheckPull(cp.Remote, cp.Local)
}

// Copy opens a file channel on the peer and copies (see Push and Pull).
// It says how long the copy took from the channel's opening.
func (j *Jump) Copy(ctx context.Context, cp Copy) (time.Duration, error) {
	ch, err := j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_File{File: &pb.FileOpen{Push: cp.Push, Path: cp.Remote}}})
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	start := time.Now()
	if cp.Push {
		err = Push(ctx, ch, cp.Local, cp.Progress)
	} else {
		err = Pull(ctx, ch, cp.Remote, cp.Local, cp.Progress)
	}
	return time.Since(start), err
}
