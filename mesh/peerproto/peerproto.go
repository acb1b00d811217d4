package peerproto

import (
	"strings"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// PeerProtocol is the protocol ID of a peer's persistent stream to its
// coordinator; see the peer package's doc.go for the message flow.
const Protocol protocol.ID = "/jumpmesh/peer/1.0.0"

// MaxPeerMessage bounds one message on the peer protocol.
const MaxMessage = 256 << 10

// What the exec capability means (issue 11 #10), decided here because the
// coordinator (when it issues a grant) and the peer (for every channel)
// apply the same rule:
//
//   - exec runs a command without a pseudo-terminal. A command in a PTY
//     (`jump -t`) is a shell session and needs the shell capability: a
//     PTY is what makes `sh -i`, vi or top interactive.
//   - A session policy may list the commands exec may run
//     (SessionPolicy.allow_commands). A pattern is matched against the
//     whole command line, argv joined by single spaces, and * stands for
//     any run of characters (spaces and slashes too): "uptime" allows
//     `uptime` and nothing else, "systemctl status *" allows any argument
//     list after "systemctl status ". Empty: any command.
//   - Under an allow-list the console may not set environment variables
//     (PATH or LD_PRELOAD would change what an allowed name runs); the
//     peer's own PATH finds the command.
//
// Limits: the list says which programs start, not what they do. A listed
// program that runs others ("sh", "bash -c *", "python3 *", "find *" with
// -exec, "vi *", "less *"), reads any file ("cat *", "tar *") or writes one
// ("tee *", "cp *") grants that much: an allow-list of "sh" is a shell.
// There is no quoting: the line is argv joined by spaces, so "a b" as one
// argument and a, b as two read the same, which only widens what a *
// matches; no shell runs the command, so ";" or "|" in an argument are
// plain characters. The stdin of an allowed command is the technician's.
// Prefer exact lines or patterns whose * is a last, data-only argument.

// Bounds of a session policy's command allow-list.
const (
	MaxAllowCommands      = 64
	MaxAllowCommandLength = 512
)

// CommandLine is argv as the allow-list sees it: joined by single spaces.
func CommandLine(argv []string) string { return strings.Join(argv, " ") }

// CommandAllowed reports whether argv may run under patterns (see above):
// any argv when patterns is empty, else one pattern must match the whole
// command line.
func CommandAllowed(patterns, argv []string) bool {
	if len(patterns) == 0 {
		return true
	}
	if len(argv) == 0 {
		return false
	}
	line := CommandLine(argv)
	for _, p := range patterns {
		if matchCommand(p, line) {
			return true
		}
	}
	return false
}

// matchCommand matches line against pattern, where * is any run of
// characters and everything else is literal.
func matchCommand(pattern, line string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == line
	}
	if !strings.HasPrefix(line, parts[0]) {
		return false
	}
	line = line[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(line, mid)
		if i < 0 {
			return false
		}
		line = line[i+len(mid):]
	}
	return len(line) >= len(last) && strings.HasSuffix(line, last)
}

// ValidateAllowCommands checks a policy's allow-list: bounded, no empty
// pattern, no control characters, and only with exec allowed.
func ValidateAllowCommands(p *pb.SessionPolicy) error {
	cmds := p.GetAllowCommands()
	if len(cmds) == 0 {
		return nil
	}
	if !p.GetExec() {
		return catalog.Errorf(catalog.CodeInvalidArgument, "(session policy %s: --allow-command needs the exec capability)", p.GetName())
	}
	if len(cmds) > MaxAllowCommands {
		return catalog.Errorf(catalog.CodeOutOfRange, "(session policy %s: %d commands; at most %d)", p.GetName(), len(cmds), MaxAllowCommands)
	}
	for _, c := range cmds {
		if strings.TrimSpace(c) == "" || len(c) > MaxAllowCommandLength || strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "(session policy %s: command pattern %q: empty, longer than %d bytes, or with control characters)",
				p.GetName(), c, MaxAllowCommandLength)
		}
	}
	return nil
}
