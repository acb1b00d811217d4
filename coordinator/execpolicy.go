package coordinator

import (
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// grantCommands puts the session policies' command allow-lists in the
// grant (the peer applies the one of the presence case it sees) and
// refuses now an exec request whose command neither policy allows. A
// console that names no command is left to the peer, which checks every
// channel. What exec means is written in mesh/peerproto/peerproto.go.
func (s *Service) grantCommands(body *pb.JumpGrantBody, r *pb.JumpRequest) error {
	var err error
	if body.AllowCommands, err = s.policyCommands(body.GetSessionPolicy()); err != nil {
		return err
	}
	if body.AllowCommandsNotPresent, err = s.policyCommands(body.GetSessionPolicyNotPresent()); err != nil {
		return err
	}
	argv := r.GetArgv()
	if r.GetCapability() != grant.Exec || len(argv) == 0 {
		return nil
	}
	if body.GetCapabilities()&grant.Exec != 0 && peerproto.CommandAllowed(body.GetAllowCommands(), argv) ||
		body.GetCapabilitiesNotPresent()&grant.Exec != 0 && peerproto.CommandAllowed(body.GetAllowCommandsNotPresent(), argv) {
		return nil
	}
	return catalog.Errorf(catalog.CodePermissionDenied, "(the peer's session policies do not allow the command %q)", peerproto.CommandLine(argv))
}

// policyCommands is the allow-list of the session policy name (none for
// no policy; a missing policy is grantBody's to refuse).
func (s *Service) policyCommands(name string) ([]string, error) {
	if name == "" {
		return nil, nil
	}
	var p *pb.SessionPolicy
	if err := s.view(func(tx *Tx) (err error) { p, err = tx.SessionPolicy(name); return err }); err != nil {
		return nil, err
	}
	return p.GetAllowCommands(), nil
}
