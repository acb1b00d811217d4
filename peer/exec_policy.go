package peer

import (
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// admitCommand applies the session policy's command allow-list to an exec
// channel (without a PTY; a PTY needs the shell capability, checked with
// the others): the command line must match one of the grant's patterns for
// the presence case that applies, and the console may set no environment
// variables. The rule and its limits are written in mesh/peerproto/peerproto.go.
func admitCommand(exec *pb.ExecOpen, capability uint32, body *pb.JumpGrantBody, present bool) error {
	if capability != grant.Exec {
		return nil
	}
	allow, policy := body.GetAllowCommandsNotPresent(), body.GetSessionPolicyNotPresent()
	if present {
		allow, policy = body.GetAllowCommands(), body.GetSessionPolicy()
	}
	if len(allow) == 0 {
		return nil
	}
	if len(exec.GetEnv()) > 0 {
		return catalog.Errorf(catalog.CodePermissionDenied, "(session policy %q lists the commands exec may run; a console may not set their environment)", policy)
	}
	if !peerproto.CommandAllowed(allow, exec.GetArgv()) {
		return catalog.Errorf(catalog.CodePermissionDenied, "(session policy %q, user %s, does not allow the command %q; it allows %q)",
			policy, presence(present), peerproto.CommandLine(exec.GetArgv()), allow)
	}
	return nil
}
