package peer

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Sessions: a console opens one stream (channel) per shell, command,
// forwarded connection or copy, each starting with the coordinator's grant.
// The peer is the last line of defence: it checks the grant itself (site
// signature, itself, the authenticated technician, expiry, replay), refuses
// when disabled, and picks the session policy by whether a user is logged
// in. See mesh/channel for what flows after the handshake.

// forwardDialTimeout bounds the peer's dial to a forward's target.
const forwardDialTimeout = 10 * time.Second

// sessions is the daemon's session state.
type sessions struct {
	gate *grant.Gate
	// live are the channels being served, from the stream's arrival to the
	// end of its handler: revocation closes some, stopSessions all.
	live liveChannels
	seq  atomic.Uint64
	// idle knows since when no admitted channel has been open (passive.go).
	idle idleTracker
	// restriction is the verified statement isDisabled goes by.
	restriction restrictionCache
}

// restrictionCache keeps the restriction of the last statement it was
// asked about, so that admitting a channel does not verify the site's
// signature on the same statement again. The statement is the daemon's
// (State.LocalPolicy, replaced by a welcome or an update), never the
// user-writable state file's: admission once read config.json and
// state.json from disk and verified the statement at every channel
// (0.2 ms of the peer's check in a jump, issue 17), and a user who removed
// the statement from the file was judged without it.
type restrictionCache struct {
	mu  sync.Mutex
	ok  bool
	raw []byte
	r   restriction
}

// of is the restriction of statement raw, computed by compute once for
// each statement in turn.
func (c *restrictionCache) of(raw []byte, compute func([]byte) restriction) restriction {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok || !bytes.Equal(c.raw, raw) {
		c.r, c.raw, c.ok = compute(raw), bytes.Clone(raw), true
	}
	return c.r
}

// serveSessions serves every version of the session protocol: on
// channel.ProtocolGrantFollows a console may send the grant right after
// the open (channel.Accept waits for it, at most channel.GrantWait, the
// channel registered in live meanwhile); admission is the same. On
// channel.ProtocolBulkSwitch a relayed exec or file channel may also move
// to a bulk connection through the relay's splice (offerSwitch).
func (d *Daemon) serveSessions() {
	d.host.SetStreamHandler(channel.Protocol, d.handleChannel)
	d.host.SetStreamHandler(channel.ProtocolGrantFollows, d.handleChannel)
	d.host.SetStreamHandler(channel.ProtocolBulkSwitch, d.handleChannel)
}

// stopSessions takes no new channel, ends the ones being served and waits
// for their handlers.
func (d *Daemon) stopSessions() {
	d.host.RemoveStreamHandler(channel.Protocol)
	d.host.RemoveStreamHandler(channel.ProtocolGrantFollows)
	d.host.RemoveStreamHandler(channel.ProtocolBulkSwitch)
	d.sess.live.close()
}

// handleChannel serves one session stream from admission to its end.
func (d *Daemon) handleChannel(st network.Stream) {
	id, ok := d.sess.live.enter(func() { _ = st.Reset() })
	if !ok {
		_ = st.Reset()
		return
	}
	defer d.sess.live.leave(id)
	ch, open, err := channel.Accept(st)
	if err != nil {
		st.Reset()
		return
	}
	defer ch.Close()
	remote := st.Conn().RemotePeer()
	capability, detail := channelCapability(open)
	body, err := d.admitChannel(st.Conn(), remote, open.GetGrant(), capability, open.GetExec())
	ev := &pb.SessionEvent{Technician: []byte(remote), Capability: capability, Detail: detail}
	if body != nil {
		ev.User, ev.GrantNonce = body.GetUser(), body.GetNonce()
		ev.SessionId = fmt.Sprintf("%x.%d", body.GetNonce()[:6], d.sess.seq.Add(1))
	}
	if err != nil {
		d.refuseChannel(ch, ev, err)
		return
	}
	// Registered, a revocation closes the channel; one that came between
	// admission and here is caught by asking the gate again.
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	if !d.sess.live.admitted(id, remote, body.GetIssuedUnix(), func() { cancel(); _ = ch.Reset() }) {
		return // the daemon is stopping
	}
	if err := d.sess.gate.Revoked(body); err != nil {
		d.refuseChannel(ch, ev, err)
		return
	}
	d.sess.idle.busy() // a passive peer stays connected while it is open
	defer func() { d.sess.idle.done(d.clock.Now()) }()
	if err := ch.Ready(ev.SessionId, nil); err != nil {
		return
	}
	if ch.AsksBulkSwitch(open) {
		ch.ArmBulkSwitch()
		go d.bulk.offerSwitch(ctx, ch)
	}
	d.log.Info("session started", "technician", remote, "user", ev.User, "capability", grant.CapabilityName(capability), "detail", detail)
	d.report(ev)
	end := &pb.SessionEvent{SessionId: ev.SessionId, Technician: ev.Technician, User: ev.User, Capability: capability, Detail: detail, End: true, GrantNonce: ev.GrantNonce}
	end.Exit = d.serveChannel(ctx, ch, open)
	if ch.BulkSwitched() {
		d.bulk.switched.Add(1)
	}
	end.BytesIn, end.BytesOut = ch.BytesRead(), ch.BytesWritten()
	d.log.Info("session ended", "technician", remote, "capability", grant.CapabilityName(capability), "in", end.BytesIn, "out", end.BytesOut)
	d.report(end)
}

// refuseChannel answers a refused open and reports it for the audit.
func (d *Daemon) refuseChannel(ch *channel.Channel, ev *pb.SessionEvent, err error) {
	d.log.Info("session refused", "technician", peer.ID(ev.GetTechnician()), "code", catalog.CodeOf(err), "error", err)
	_ = ch.Ready("", err)
	ev.Refused = catalog.ErrorToPB(err)
	d.report(ev)
}

func (d *Daemon) serveChannel(ctx context.Context, ch *channel.Channel, open *pb.ChannelOpen) *pb.ExitStatus {
	switch k := open.GetKind().(type) {
	case *pb.ChannelOpen_Exec:
		return ServeExec(ctx, ch, k.Exec, ExecOptions{Logger: d.log})
	case *pb.ChannelOpen_Forward:
		if err := serveForward(ctx, ch, k.Forward, forwardDialTimeout, &d.bulk); err != nil {
			return &pb.ExitStatus{Code: 1, Error: err.Error()}
		}
	case *pb.ChannelOpen_File:
		if err := ServeFiles(ctx, ch, k.File); err != nil {
			return &pb.ExitStatus{Code: 1, Error: err.Error()}
		}
	}
	return &pb.ExitStatus{}
}

// channelCapability is what an open needs, and a line for the audit.
func channelCapability(open *pb.ChannelOpen) (uint32, string) {
	switch k := open.GetKind().(type) {
	case *pb.ChannelOpen_Exec:
		switch {
		case len(k.Exec.GetArgv()) == 0:
			return grant.Shell, "shell"
		case k.Exec.GetTty():
			// A command in a PTY is interactive: a shell session (see
			// mesh/peerproto/peerproto.go for what exec means).
			return grant.Shell, fmt.Sprintf("shell %q", k.Exec.GetArgv())
		}
		return grant.Exec, fmt.Sprintf("exec %q", k.Exec.GetArgv())
	case *pb.ChannelOpen_Forward:
		return grant.Forward, fmt.Sprintf("forward %s:%d", k.Forward.GetHost(), k.Forward.GetPort())
	case *pb.ChannelOpen_File:
		if k.File.GetPush() {
			return grant.FileTransfer, "copy to " + k.File.GetPath()
		}
		return grant.FileTransfer, "copy from " + k.File.GetPath()
	}
	return 0, "unknown channel"
}

// admitChannel checks the grant on this connection and the local rules.
func (d *Daemon) admitChannel(conn network.Conn, remote peer.ID, g *pb.JumpGrant, capability uint32, exec *pb.ExecOpen) (*pb.JumpGrantBody, error) {
	if capability == 0 {
		return nil, catalog.Errorf(catalog.CodeProtocol, "(unknown channel kind)")
	}
	body, err := d.sess.gate.Admit(g, grant.Check{Site: d.site.ID, Peer: d.host.ID(), Now: d.clock.Now()}, conn)
	if err != nil {
		return body, err
	}
	if d.isDisabled() {
		return body, catalog.NewError(catalog.CodePeerDisabled)
	}
	users, _ := d.cfg.Sys.ConsoleUsers()
	present := len(users) > 0
	caps, policy := body.GetCapabilitiesNotPresent(), body.GetSessionPolicyNotPresent()
	if present {
		caps, policy = body.GetCapabilities(), body.GetSessionPolicy()
	}
	if caps&capability == 0 {
		return body, catalog.Errorf(catalog.CodePermissionDenied, "(session policy %q, user %s, does not allow %s)",
			policy, presence(present), grant.CapabilityName(capability))
	}
	if err := admitCommand(exec, capability, body, present); err != nil {
		return body, err
	}
	if present && body.GetRequireConsent() {
		return body, catalog.Errorf(catalog.CodeConsentRequired, "(session policy %q; %v logged in)", policy, users)
	}
	return body, nil
}

func presence(present bool) string {
	if present {
		return "present"
	}
	return "not present"
}

// report sends a session event to the coordinator when connected; the
// coordinator's audit relies on it, the session does not.
func (d *Daemon) report(ev *pb.SessionEvent) {
	d.mu.Lock()
	ms := d.session_
	d.mu.Unlock()
	if ms == nil {
		d.log.Warn("session event not reported: coordinator not connected", "session", ev.GetSessionId())
		return
	}
	if err := ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Session{Session: ev}}, sendTimeout); err != nil {
		d.log.Warn("reporting session event", "error", err)
	}
}
