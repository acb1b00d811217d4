package coordinator

import (
	"context"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Issue 12 #8: a store failure is the coordinator's business. The console
// gets the code, the catalog message and a short note; the store's text
// stays in the coordinator's log. The store is a real Badger, closed under
// the service.
func TestStoreErrorStaysOnTheCoordinator(t *testing.T) {
	svc, st, ids := failClosedSite(t, &pb.InstallerDefaults{Name: "web-01"})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// The grant's audit event cannot be stored: the code alone.
	_, err := svc.jump(rootCaller, &pb.JumpRequest{Ref: "web-01", Capability: grant.Exec})
	if console := catalog.ErrorFromPB(catalog.ErrorToPB(err)).Error(); !catalog.HasCode(err, catalog.CodeAuditFailed) || console != catalog.CodeAuditFailed.Message() {
		t.Errorf("jump: the console reads %q, want the catalog message alone (server side: %v)", console, err)
	}
	errs := map[string]error{}
	_, errs["audit list"] = svc.auditList(rootCaller, &pb.AuditRequest{})
	_, errs["authenticate"] = svc.Handle(context.Background(), ids[0], &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
	for what, err := range errs {
		if catalog.CodeOf(err) != catalog.CodeInternal || !strings.Contains(err.Error(), "store") && !strings.Contains(err.Error(), "authenticating") {
			t.Fatalf("%s over a closed store: %v, want an internal store error", what, err)
		}
		// What the console prints: the error after the wire.
		console := catalog.ErrorFromPB(catalog.ErrorToPB(err)).Error()
		if want := catalog.CodeInternal.Message() + " " + catalog.InternalNote; console != want {
			t.Errorf("%s: the console reads %q, want %q (server side: %q)", what, console, want, err)
		}
		if code, _, detail := catalog.LocalErrorParts(err); code != catalog.CodeInternal || detail == catalog.InternalNote {
			t.Errorf("%s: the coordinator's own view lost the detail: %s %q", what, code, detail)
		}
	}
}
