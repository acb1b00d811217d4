package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Log field names.
const (
	logRemote  = "remote"
	logUser    = "user"
	logRequest = "request"
	logCode    = "code"
	logError   = "error"
)

// Service answers control requests. It holds no network state, so tests and
// the in-process lab can call Handle directly.
type Service struct {
	store  *Store
	siteID peer.ID
	signer mesh.Signer
	clock  mesh.Clock
	log    *slog.Logger
	// addrs returns the site's advertised addresses (used in keys).
	addrs  func() []ma.Multiaddr
	relays []ma.Multiaddr

	peers    *peerStore
	enrollMu sync.Mutex
	admitMu  sync.Mutex
	limiter  *rate.Limiter
	// tickets are the turns booked for peers told to retry (enroll.go);
	// admitLast the latest time admit saw; ticketsSwept the last sweep of
	// unused turns. All under admitMu.
	tickets      map[peer.ID]time.Time
	admitLast    time.Time
	ticketsSwept time.Time
	// admissionRate is ServiceConfig.AdmissionRate.
	admissionRate float64
	// closing is set when the coordinator records every online peer's last
	// contact before it closes (recordOffline).
	closing atomic.Bool
	// retries counts hellos told to retry by the connection rate; ends
	// the peer streams ended unanswered (peerends.go).
	retries atomic.Int64
	ends    peerEnds
	// resources bound what callers make the coordinator spend;
	// strangers gives callers that are not members their turns.
	resources Resources
	strangers *strangerGate

	jumps   *jumps
	revoker revoker
	// pool writes the sessions' send queues; slowPeers counts the peers
	// disconnected for not reading (push.go).
	pool      pushPool
	slowPeers atomic.Int64
	hostAddrs func(peer.ID) []ma.Multiaddr
	connAddrs func(peer.ID) []ma.Multiaddr

	settingsCache atomic.Pointer[pb.Settings]
	// settingsPush orders a settings set's write and push against the
	// watch that brings the same write back (follow.go): pushedSettings
	// is what the last push under it sent, so a change is pushed once.
	settingsPush   sync.Mutex
	pushedSettings *pb.Settings
	relayBook      relayBook
	jumpointBook   jumpointBook
	paths          *pathStats
	// wakeSender orders wakers (wake.go); wakes counts the attempts.
	wakeSender WakeSender
	wakes      *prometheus.CounterVec
	// remoteWakes are wake orders given through other coordinators
	// (wakeremote.go).
	remoteWakes remoteWakes
	// memberView follows the site's other coordinators (members.go).
	memberView *memberView
}

// PeerRetries is how many peer hellos the connection rate turned away.
func (s *Service) PeerRetries() int64 { return s.retries.Load() }

// PeerCounts returns how many peers are known and how many are online.
func (s *Service) PeerCounts() (total, online int) {
	for _, p := range s.peers.snapshot() {
		total++
		if p.online {
			online++
		}
	}
	return total, online
}

// ServiceConfig builds a Service. Store and Signer are required.
type ServiceConfig struct {
	Store  *Store
	Signer mesh.Signer
	Clock  mesh.Clock
	Logger *slog.Logger
	// Addrs returns the addresses to put in installer keys.
	Addrs  func() []ma.Multiaddr
	Relays []ma.Multiaddr
	// PeerAddrs returns the addresses a peer is known at (the host's
	// peerstore, fed by identify), handed to consoles with grants.
	PeerAddrs func(peer.ID) []ma.Multiaddr
	// ConnAddrs returns the remote addresses of the host's open
	// connections to a party: whether a console and a peer both reach the
	// coordinator over loopback decides whether the peer's loopback
	// addresses are handed to the console (addrscope.go). Nil: never.
	ConnAddrs func(peer.ID) []ma.Multiaddr
	// AdmissionRate, for benchmarks and labs, replaces the site's
	// connection-rate: 0 uses the site setting, < 0 admits without limit.
	AdmissionRate float64
	// Resources bound what callers may make it spend (zero fields:
	// DefaultResources).
	Resources Resources
	// Wake orders wakers and reaches passive ports (nil: wakes fail with
	// wake_failed; the coordinator gives its host's).
	Wake WakeSender
}

// NewService makes a Service over an open store.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil || cfg.Signer == nil {
		return nil, fmt.Errorf("service config: store and signer are required")
	}
	s := &Service{store: cfg.Store, signer: cfg.Signer, siteID: cfg.Signer.PeerID(), clock: cfg.Clock,
		log: cfg.Logger, addrs: cfg.Addrs, relays: cfg.Relays, admissionRate: cfg.AdmissionRate,
		wakeSender: cfg.Wake, wakes: newWakeMetric()}
	s.resources = cfg.Resources.withDefaults()
	if err := s.resources.validate(); err != nil {
		return nil, err
	}
	s.strangers = newStrangerGate(s.resources)
	if s.clock == nil {
		s.clock = mesh.SystemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.addrs == nil {
		s.addrs = func() []ma.Multiaddr { return nil }
	}
	s.jumps, s.hostAddrs, s.connAddrs, s.paths = newJumps(), cfg.PeerAddrs, cfg.ConnAddrs, newPathStats()
	if s.hostAddrs == nil {
		s.hostAddrs = func(peer.ID) []ma.Multiaddr { return nil }
	}
	peers, err := newPeerStore(s.store, s.log)
	if err != nil {
		return nil, fmt.Errorf("loading peers: %w", err)
	}
	s.peers = peers
	s.startPresence()
	if err := s.startMembers(); err != nil {
		return nil, fmt.Errorf("reading the site's members: %w", err)
	}
	s.tellPeersOfMembers()
	if err := s.startFollowing(); err != nil {
		return nil, fmt.Errorf("following the site's other coordinators: %w", err)
	}
	return s, nil
}

// caller is the authenticated technician behind a request.
type caller struct {
	peer peer.ID
	user *pb.User
	// addr is the remote address of the connection the request came on
	// (control.RemoteAddr); nil when unknown (a call from inside).
	addr ma.Multiaddr
}

func (c *caller) name() string  { return c.user.GetName() }
func (c *caller) isAdmin() bool { return c.user.GetRole() == pb.Role_ROLE_ADMIN }

func (c *caller) requireAdmin() error {
	if !c.isAdmin() {
		return catalog.Errorf(catalog.CodePermissionDenied, "(administrators only; %s is a technician)", c.name())
	}
	return nil
}

// Handle answers one request from remote, whose peer ID the transport has
// authenticated. Errors are catalog errors.
func (s *Service) Handle(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
	if l := req.GetLogin(); l != nil {
		return s.login(remote, l)
	}
	c, err := s.authenticate(remote)
	if err != nil {
		return nil, err
	}
	c.addr = control.RemoteAddr(ctx)
	return s.dispatch(c, req)
}

func (s *Service) dispatch(c *caller, req *pb.Request) (*pb.Response, error) {
	switch c.user.GetRole() {
	case pb.Role_ROLE_RELAY:
		return s.dispatchRelay(c, req)
	case pb.Role_ROLE_JUMPOINT:
		return s.dispatchJumpoint(c, req)
	}
	switch b := req.GetBody().(type) {
	case *pb.Request_Whoami:
		return s.userShow(c, c.name())
	case *pb.Request_UserInvite:
		return s.userInvite(c, b.UserInvite)
	case *pb.Request_UserList:
		return s.userList(c)
	case *pb.Request_UserShow:
		return s.userShow(c, b.UserShow.GetName())
	case *pb.Request_UserRemove:
		return s.userRemove(c, b.UserRemove.GetName())
	case *pb.Request_UserRole:
		return s.userRole(c, b.UserRole)
	case *pb.Request_GroupCreate:
		return s.groupCreate(c, b.GroupCreate)
	case *pb.Request_GroupList:
		return s.groupList(c)
	case *pb.Request_GroupShow:
		return s.groupShow(c, b.GroupShow.GetName())
	case *pb.Request_GroupAdd:
		return s.groupAdd(c, b.GroupAdd)
	case *pb.Request_GroupRemove:
		return s.groupRemove(c, b.GroupRemove)
	case *pb.Request_GroupDelete:
		return s.groupDelete(c, b.GroupDelete.GetName())
	case *pb.Request_JumpPolicyPut:
		return s.jumpPolicyPut(c, b.JumpPolicyPut, req.GetCreate())
	case *pb.Request_JumpPolicyList:
		return s.jumpPolicyList()
	case *pb.Request_JumpPolicyShow:
		return s.jumpPolicyShow(b.JumpPolicyShow.GetName())
	case *pb.Request_JumpPolicyDelete:
		return s.jumpPolicyDelete(c, b.JumpPolicyDelete.GetName())
	case *pb.Request_SessionPolicyPut:
		return s.sessionPolicyPut(c, b.SessionPolicyPut, req.GetCreate())
	case *pb.Request_SessionPolicyList:
		return s.sessionPolicyList()
	case *pb.Request_SessionPolicyShow:
		return s.sessionPolicyShow(b.SessionPolicyShow.GetName())
	case *pb.Request_SessionPolicyDelete:
		return s.sessionPolicyDelete(c, b.SessionPolicyDelete.GetName())
	case *pb.Request_SettingsShow:
		return s.handleSettingsShow()
	case *pb.Request_SettingsSet:
		return s.handleSettingsSet(c, b.SettingsSet)
	case *pb.Request_InstallerCreate:
		return s.installerCreate(c, b.InstallerCreate)
	case *pb.Request_InstallerList:
		return s.installerList(c, b.InstallerList)
	case *pb.Request_InstallerShow:
		return s.installerShow(c, b.InstallerShow.GetName())
	case *pb.Request_InstallerExtend:
		return s.installerExtend(c, b.InstallerExtend)
	case *pb.Request_InstallerDelete:
		return s.installerDelete(c, b.InstallerDelete.GetName())
	case *pb.Request_InstallerCheck:
		return s.installerCheck(b.InstallerCheck.GetKey())
	case *pb.Request_PeerList:
		return s.peerList(c, b.PeerList)
	case *pb.Request_PeerShow:
		return s.peerShow(c, b.PeerShow)
	case *pb.Request_PeerSet:
		return s.peerSet(c, b.PeerSet)
	case *pb.Request_PeerRemove:
		return s.peerRemove(c, b.PeerRemove)
	case *pb.Request_Jump:
		return s.jump(c, b.Jump)
	case *pb.Request_Wake:
		return s.wakeRequest(c, b.Wake)
	case *pb.Request_Audit:
		return s.auditList(c, b.Audit)
	case *pb.Request_RelayAcl:
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "(relays only)")
	case *pb.Request_JumpointAcl:
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "(jumpoints only)")
	case *pb.Request_JumpointList:
		return s.jumpointList()
	case *pb.Request_JumpointSet:
		return s.jumpointSet(c, b.JumpointSet)
	case *pb.Request_PathReport:
		return s.pathReport(b.PathReport)
	case *pb.Request_PathStats:
		return s.pathStatsResponse(c)
	case nil:
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(empty request)")
	default:
		return nil, catalog.Errorf(catalog.CodeProtocol, "(request %s is not served by this coordinator)", control.RequestName(req))
	}
}

// lastSeenEvery bounds how often a user's last-seen time is written.
const lastSeenEvery = time.Minute

// userByKey is the user whose key id is, or nil.
func (s *Service) userByKey(id peer.ID) (*pb.User, error) {
	var u *pb.User
	err := s.store.View(func(tx *Tx) error {
		name, err := tx.UserByKey(id)
		if err != nil || name == "" {
			return err
		}
		u, err = tx.User(name)
		return err
	})
	return u, err
}

// authenticate maps the remote, authenticated by the secure channel, to its technician.
func (s *Service) authenticate(remote peer.ID) (*caller, error) {
	u, err := s.userByKey(remote)
	if err != nil {
		return nil, catalog.Internalf("(authenticating %s: %w)", remote, err)
	}
	if u == nil {
		return nil, catalog.Errorf(catalog.CodeUnknownTechnician, "(key %s)", remote)
	}
	now := s.clock.Now()
	if now.Sub(time.Unix(u.GetLastSeenUnix(), 0)) >= lastSeenEvery {
		s.touchUser(u.GetName(), now)
	}
	return &caller{peer: remote, user: u}, nil
}

func (s *Service) touchUser(name string, now time.Time) {
	err := s.store.Update(func(tx *Tx) error {
		u, err := tx.User(name)
		if err != nil || u == nil {
			return err
		}
		u.LastSeenUnix = now.Unix()
		return tx.PutUser(u)
	})
	if err != nil {
		s.log.Warn("recording last seen", logUser, name, logError, err)
	}
}

// update runs fn in a store transaction and turns storage failures into
// catalog errors while passing catalog errors from fn through unchanged.
func (s *Service) update(fn func(tx *Tx) error) error {
	return storeErr(s.store.Update(fn))
}

func (s *Service) view(fn func(tx *Tx) error) error {
	return storeErr(s.store.View(fn))
}

func storeErr(err error) error {
	var me *catalog.Error
	if err == nil || errors.As(err, &me) {
		return err
	}
	return catalog.Internalf("(store: %w)", err) // logged by handle; the caller sees InternalNote
}

func ok() *pb.Response { return &pb.Response{Body: &pb.Response_Ok{Ok: &pb.Empty{}}} }
