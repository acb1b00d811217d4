package scenario

import (
	"context"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// natReadTimeout bounds reading one peer's NAT report at the end of a run.
const natReadTimeout = 10 * time.Second

// collectNAT reads, for each installed peer, what it last reported of its
// NAT (`jumpmesh peer status --json`; the state file keeps it after the
// daemon stopped) into the run's hosts, so that the report shows why a
// pair stayed relayed. A peer that cannot say is left without one.
func (r *runner) collectNAT(ctx context.Context) {
	for i := range r.res.Hosts {
		h := &r.res.Hosts[i]
		dir, ok := r.peers[h.Name]
		if !ok || ctx.Err() != nil {
			continue
		}
		var st struct {
			NAT *results.HostNAT `json:"nat"`
		}
		cctx, cancel := context.WithTimeout(ctx, natReadTimeout)
		_, err := r.jm(cctx, h.Name, &st, "peer", "status", "--dir", dir, "--json")
		cancel()
		if err == nil {
			h.NAT = st.NAT
		}
	}
}
