package wake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Timeouts of one wake order.
const (
	// orderReadTimeout bounds reading a WakeOrder and a WakeReport's write.
	orderReadTimeout = 10 * time.Second
	// sendTimeout bounds a waker's sending (Forward's 2 s connects included).
	sendTimeout = 10 * time.Second
	// OrderTimeout bounds Order when its context has no deadline.
	OrderTimeout = 20 * time.Second
	// maxOrder is a WakeOrder's limit: a command and its field header.
	maxOrder = MaxCommand + 16
	// maxReport bounds a WakeReport (a few lines per MAC and address).
	maxReport = 16 << 10
)

// WakerConfig is what a Waker needs. Site is required.
type WakerConfig struct {
	// Site is the site's peer ID: only streams from it are served, and
	// only commands it signed are carried out.
	Site peer.ID
	// Now is the clock commands are checked against (nil: time.Now).
	Now func() time.Time
	// Log receives each order served or refused (nil: none).
	Log *slog.Logger
	// Toward picks the interface for a body's magic packets (nil: the
	// interface toward gateway_ip, else toward one of target_ips, else the
	// default route's). A jumpoint sets it to face the target's IPs.
	Toward func(*pb.WakeBody) (*net.Interface, error)
}

// Waker serves Protocol on a site member (a peer or a jumpoint): it carries
// out the site's wake orders on its LAN. Its methods are safe for
// concurrent use.
type Waker struct {
	site   peer.ID
	now    func() time.Time
	log    *slog.Logger
	toward func(*pb.WakeBody) (*net.Interface, error)
}

// NewWaker returns a Waker; register its Handle for Protocol.
func NewWaker(cfg WakerConfig) *Waker {
	w := &Waker{site: cfg.Site, now: cfg.Now, log: cfg.Log, toward: cfg.Toward}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.toward == nil {
		w.toward = DefaultToward
	}
	return w
}

// Handle serves one wake stream: a stream from anyone but the site is reset
// unread; otherwise it reads the WakeOrder, verifies its command (signed by
// the site, in force; any target), sends, and writes a WakeReport.
func (w *Waker) Handle(s network.Stream) {
	if w.site == "" || s.Conn().RemotePeer() != w.site {
		_ = s.Reset()
		return
	}
	ms := frame.NewStream(s, maxOrder)
	var order pb.WakeOrder
	if err := ms.Read(&order, orderReadTimeout); err != nil {
		w.log.Info("wake order unreadable", "err", err)
		_ = s.Reset()
		return
	}
	report := w.serve(&order)
	if err := ms.Write(report, orderReadTimeout); err != nil {
		w.log.Info("wake report not written", "err", err)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

func (w *Waker) serve(order *pb.WakeOrder) *pb.WakeReport {
	body, err := Verify(order.GetCommand(), w.site, "", w.now())
	if err != nil {
		w.log.Warn("wake order refused", "err", err)
		return &pb.WakeReport{Error: catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(the waker refused the command: %v)", err))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	sent, err := w.Send(ctx, body, order.GetCommand())
	w.log.Info("wake order served", "target", peer.ID(body.GetTargetId()), "sent", len(sent), "err", err)
	if err != nil {
		return &pb.WakeReport{Sent: sent, Error: catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(%v)", err))}
	}
	return &pb.WakeReport{Sent: sent}
}

// Send carries out a verified command: the magic packet for each of the
// body's MACs on the interface Toward picks, and the command forwarded to
// each passive address. It returns the sends that went out, and an error
// only when none did, saying why. It checks nothing: callers verify cmd
// first.
func (w *Waker) Send(ctx context.Context, body *pb.WakeBody, cmd *pb.WakeCommand) ([]string, error) {
	var sent []string
	var errs []error
	if len(body.GetMacs()) > 0 {
		ifi, err := w.toward(body)
		if err != nil {
			errs = append(errs, err)
		} else {
			for _, m := range body.GetMacs() {
				mac, err := parseMAC(m)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				lines, err := SendMagic(ctx, ifi, mac, body.GetSecureon())
				sent = append(sent, lines...)
				if err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if len(body.GetPassiveAddrs()) > 0 {
		lines := Forward(ctx, cmd, body.GetPassiveAddrs())
		if len(lines) == 0 {
			errs = append(errs, fmt.Errorf("no passive address (of %d) took the command", len(body.GetPassiveAddrs())))
		}
		sent = append(sent, lines...)
	}
	if len(body.GetMacs()) == 0 && len(body.GetPassiveAddrs()) == 0 {
		errs = append(errs, errors.New("the command names no MAC and no passive address"))
	}
	if len(sent) > 0 {
		return sent, nil
	}
	return nil, errors.Join(errs...)
}

// DefaultToward is the interface a waker sends a body's magic packets on
// when its config names none: toward the body's gateway, else toward one of
// its target IPs, else the default route's.
func DefaultToward(body *pb.WakeBody) (*net.Interface, error) {
	if ip, err := netip.ParseAddr(body.GetGatewayIp()); err == nil {
		if ifi, err := InterfaceToward(ip); err == nil {
			return ifi, nil
		}
	}
	if ifi, err := TowardTargets(body); err == nil {
		return ifi, nil
	}
	return DefaultRouteInterface()
}

// TowardTargets is the interface toward the first of the body's target IPs
// that one faces (a jumpoint's choice).
func TowardTargets(body *pb.WakeBody) (*net.Interface, error) {
	for _, s := range body.GetTargetIps() {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			if p, perr := netip.ParsePrefix(s); perr == nil {
				ip = p.Addr()
			} else {
				continue
			}
		}
		if ifi, err := InterfaceToward(ip); err == nil {
			return ifi, nil
		}
	}
	return nil, fmt.Errorf("%w toward the target's IPs %v", ErrNoInterface, body.GetTargetIps())
}

// Order asks waker, over h, to carry out cmd: it opens a Protocol stream
// (bounded by ctx, or OrderTimeout when ctx has no deadline), writes the
// WakeOrder and reads the WakeReport. When the report arrived, it is
// returned, with its error (a catalog error) as the error when it carries
// one; otherwise the report is nil.
func Order(ctx context.Context, h host.Host, waker peer.ID, cmd *pb.WakeCommand) (*pb.WakeReport, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, OrderTimeout)
		defer cancel()
	}
	s, err := h.NewStream(ctx, waker, Protocol)
	if err != nil {
		return nil, fmt.Errorf("opening a wake stream to %s: %w", waker, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = s.SetDeadline(deadline)
	ms := frame.NewStream(s, maxReport)
	if err := ms.Write(&pb.WakeOrder{Command: cmd}, 0); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("writing the wake order to %s: %w", waker, err)
	}
	_ = s.CloseWrite()
	report := new(pb.WakeReport)
	if err := ms.Read(report, 0); err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("reading the wake report of %s: %w", waker, err)
	}
	_ = s.Close()
	if report.GetError() != nil {
		return report, catalog.ErrorFromPB(report.GetError())
	}
	return report, nil
}
