package coordinator

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The ordering doc.go's "A grant's audit event before its answer" relies
// on: a grant is answered only once the transaction that stores its audit
// event has committed (here held just before its commit: no answer while
// it is held), and the event it answers with is stored, indexed by the
// grant's nonce. When that write fails the grant is not issued
// (TestGrantNotIssuedWhenAuditFails).
func TestGrantAnsweredOnlyAfterItsAuditCommits(t *testing.T) {
	svc, st, _ := failClosedSite(t, &pb.InstallerDefaults{Name: "web-01"})
	held, release := make(chan struct{}), make(chan struct{})
	st.beforeCommit = func() {
		held <- struct{}{}
		<-release
	}
	type answer struct {
		resp *pb.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := svc.jump(rootCaller, &pb.JumpRequest{Ref: "web-01", Capability: grant.Exec})
		answered <- answer{resp, err}
	}()
	select {
	case <-held:
	case a := <-answered:
		t.Fatalf("answered (%v) without writing its audit event", a.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the grant's audit write never reached its commit")
	}
	select {
	case a := <-answered:
		t.Fatalf("answered (%v) before its audit event committed", a.err)
	default: // the write is held in its transaction: no answer can have left
	}
	st.beforeCommit = nil // the held call has its copy
	close(release)
	var a answer
	select {
	case a = <-answered:
	case <-time.After(20 * time.Second):
		t.Fatal("no answer once the audit event committed")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	body, err := grant.Parse(a.resp.GetJump().GetGrant())
	if err != nil {
		t.Fatal(err)
	}
	var ev *pb.AuditEvent
	if err := st.View(func(tx *Tx) (err error) { ev, err = tx.GrantEvent(body.GetNonce()); return err }); err != nil || ev == nil {
		t.Fatalf("the answered grant's audit event: %v, %v", ev, err)
	}
}
