package coordinator

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/localpolicy"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// localPolicy is the site's signed statement of the restrictions on the
// users of peer id's host, sent in every welcome and update. The peer keeps
// it where its user can write; the signature is what keeps the user from
// turning a restriction off (mesh/localpolicy, peer/doc.go). One Ed25519
// signature per welcome, and per online peer when the settings change.
func (s *Service) localPolicy(id peer.ID, st *pb.Settings) *pb.LocalPolicy {
	lp, err := localpolicy.Sign(s.signer, id, st.GetRestrictLocalUninstall(), s.clock.Now())
	if err != nil {
		s.log.Warn("signing a local policy", logPeer, id, logError, err)
		return nil
	}
	return lp
}
