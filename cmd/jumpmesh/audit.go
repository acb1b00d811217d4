package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

type auditView struct {
	Time       string `json:"time"`
	Kind       string `json:"kind"`
	Action     string `json:"action,omitempty"`
	Target     string `json:"target,omitempty"`
	Jumpoint   string `json:"jumpoint,omitempty"`
	Started    string `json:"started,omitempty"`
	Ended      string `json:"ended,omitempty"`
	User       string `json:"user,omitempty"`
	Technician string `json:"technician,omitempty"`
	Peer       string `json:"peer,omitempty"`
	PeerName   string `json:"peer_name,omitempty"`
	Capability string `json:"capability,omitempty"`
	Code       string `json:"code,omitempty"`
	Detail     string `json:"detail,omitempty"`
	Session    string `json:"session,omitempty"`
	BytesIn    uint64 `json:"bytes_in,omitempty"`
	BytesOut   uint64 `json:"bytes_out,omitempty"`
	Exit       *int32 `json:"exit_code,omitempty"`
	Signal     string `json:"exit_signal,omitempty"`
}

func newAuditView(e *pb.AuditEvent) auditView {
	v := auditView{Time: time.Unix(0, e.GetTimeUnixNano()).UTC().Format(time.RFC3339Nano), Kind: e.GetKind(), Action: e.GetAction(), Target: e.GetTarget(), User: e.GetUser(),
		PeerName: e.GetPeerName(), Code: e.GetCode(), Detail: e.GetDetail(), Session: e.GetSessionId(),
		BytesIn: e.GetBytesIn(), BytesOut: e.GetBytesOut(), Jumpoint: e.GetJumpoint()}
	if e.GetStartedUnixNano() != 0 {
		v.Started = time.Unix(0, e.GetStartedUnixNano()).UTC().Format(time.RFC3339Nano)
		v.Ended = time.Unix(0, e.GetEndedUnixNano()).UTC().Format(time.RFC3339Nano)
	}
	if len(e.GetTechnician()) > 0 {
		v.Technician = peer.ID(e.GetTechnician()).String()
	}
	if len(e.GetPeer()) > 0 {
		v.Peer = peer.ID(e.GetPeer()).String()
	}
	if e.GetCapability() != 0 {
		v.Capability = grant.CapabilityName(e.GetCapability())
	}
	if e.GetExit() != nil {
		code := e.GetExit().GetCode()
		v.Exit, v.Signal = &code, e.GetExit().GetSignal()
	}
	return v
}

func auditCommand() *cli.Command {
	var f struct {
		peer, user, since, kind string
		limit                   uint
	}
	return &cli.Command{
		Name:      "audit",
		Usage:     "read the audit log: grants, refusals, session starts and ends, agentless tunnels, administrative changes (admins)",
		UsageText: "jumpmesh audit [--peer PEER] [--user NAME] [--kind KIND] [--since 24h] [--limit N] [--json]\n\nExamples:\n  jumpmesh audit --peer web-01 --since 7d\n  jumpmesh audit --kind admin --user alice",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "peer", Destination: &f.peer, Usage: "only this peer (ID or name)"},
			&cli.StringFlag{Name: "user", Destination: &f.user, Usage: "only this technician"},
			&cli.StringFlag{Name: "kind", Destination: &f.kind, Usage: "only events of this kind: grant, refused, start, end, tunnel (through a jumpoint to a host without a peer), admin (who changed what) or wake (who woke which peer, through whom: the action is the method, wol or passive)"},
			&cli.StringFlag{Name: "since", Destination: &f.since, Value: "24h", Usage: "how far back (e.g. 1h, 7d)"},
			&cli.UintFlag{Name: "limit", Destination: &f.limit, Value: 1000, Usage: "at most this many of the newest events (0: all; read in pages that fit a control message)"},
			jsonFlag,
		},
		Action: clientAction(0, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			d, err := parseDuration(f.since)
			if err != nil {
				return err
			}
			if err := checkAuditKind(f.kind); err != nil {
				return err
			}
			events, err := c.Audit(ctx, &pb.AuditRequest{Peer: f.peer, User: f.user, Kind: f.kind, SinceUnix: time.Now().Add(-d).Unix(), Limit: uint32(f.limit)})
			if err != nil {
				return err
			}
			views := make([]auditView, 0, len(events))
			for _, e := range events {
				views = append(views, newAuditView(e))
			}
			return output(cc, views, func(w io.Writer) {
				rows := [][]string{{"TIME", "EVENT", "USER", "PEER", "CAPABILITY", "RESULT", "DETAIL"}}
				for i, v := range views {
					result := v.Code
					switch v.Kind {
					case "end":
						result = fmt.Sprintf("exit %d, %s in, %s out", events[i].GetExit().GetCode(), bytesText(v.BytesIn), bytesText(v.BytesOut))
					case coordinator.AuditAdmin:
						result = v.Action + " " + v.Target
					case coordinator.AuditTunnel:
						if result == "" {
							result = fmt.Sprintf("%s in, %s out", bytesText(v.BytesIn), bytesText(v.BytesOut))
						}
					}
					if v.Jumpoint != "" && v.Kind != coordinator.AuditAdmin && v.PeerName == "" {
						v.PeerName = orDash(v.Target) // an agentless target; the detail names the jumpoint
					}
					rows = append(rows, []string{unixTime(events[i].GetTimeUnixNano() / 1e9), v.Kind, orDash(v.User), orDash(v.PeerName),
						orDash(v.Capability), orDash(result), orDash(v.Detail)})
				}
				table(w, rows)
			})
		}),
	}
}

// checkAuditKind refuses a kind the audit log never holds, so a typo does
// not read as "nothing happened".
func checkAuditKind(kind string) error {
	switch kind {
	case "", coordinator.AuditGrant, coordinator.AuditRefused, coordinator.AuditStart, coordinator.AuditEnd, coordinator.AuditTunnel, coordinator.AuditAdmin, coordinator.AuditWake:
		return nil
	}
	return usagef("audit: --kind is grant, refused, start, end, tunnel, admin or wake (got %q)", kind)
}
