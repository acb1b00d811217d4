package coordinator

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestPathStatsCountJumpointSessions: a console's report of a session
// through a jumpoint is counted apart from direct and relayed ones; an
// unknown path is refused and counts nothing.
func TestPathStatsCountJumpointSessions(t *testing.T) {
	p := newPathStats()
	p.register(prometheus.NewRegistry())
	for _, r := range []*pb.PathReport{
		{Initial: "direct", Final: "direct"},
		{Initial: "relayed", Final: "direct", TimeToDirectMillis: 240},
		{Initial: "relayed", Final: "relayed"},
		{Initial: "jumpoint", Final: "jumpoint"},
		{Initial: "jumpoint", Final: "jumpoint"},
	} {
		if err := p.record(r); err != nil {
			t.Fatalf("record %v: %v", r, err)
		}
	}
	if err := p.record(&pb.PathReport{Initial: "teleport"}); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Errorf("unknown path: %v, want invalid_argument", err)
	}
	st := p.snapshot()
	if st.GetDirect() != 1 || st.GetUpgraded() != 1 || st.GetRelayed() != 1 || st.GetJumpoint() != 2 {
		t.Errorf("stats %v, want 1 direct, 1 upgraded, 1 relayed, 2 jumpoint", st)
	}
}
