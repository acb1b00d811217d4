package peer_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestDirectJumpReportsItsPathDuringTheSession: a jump that reached its
// peer directly reports the path while its session runs (issue 17: not a
// round trip after the answer), and ReportPath at the end waits for that
// report instead of sending another.
func TestDirectJumpReportsItsPathDuringTheSession(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "web-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ch, err := j.Open(ctx, execOpen("cat"))
	if err != nil {
		t.Fatal(err)
	}
	if p := j.Path(); p.Kind != console.PathDirect {
		t.Fatalf("path %s, want direct", p)
	}
	stdin, feed := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := console.Exec(ctx, ch, console.ExecIO{Stdin: stdin, Stdout: io.Discard, Stderr: io.Discard})
		done <- err
	}()
	// cat waits on its input: the session is running.
	coordinatortest.Eventually(t, 10*time.Second, "the path counted while the session runs", func() bool {
		st, err := site.Admin.PathStats(ctx)
		return err == nil && st.GetDirect() == 1
	})
	feed.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	j.ReportPath(ctx)
	j.ReportPath(ctx)
	st, err := site.Admin.PathStats(ctx)
	if err != nil || st.GetDirect() != 1 || st.GetRelayed()+st.GetUpgraded()+st.GetJumpoint() != 0 {
		t.Fatalf("path stats %v %v: want one direct session", st, err)
	}
}
