package coordinator

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Limits of installer defaults (seeds: a name is at most 128 characters).
const (
	MaxPeerNameLength    = 128
	MaxTagLength         = 128
	MaxCommentsLength    = 1024
	MinMaxOfflineMinutes = 5
	MaxMaxOfflineMinutes = 525600 // one year
	// EphemeralMinutes is what --ephemeral means (seeds: removed 5 minutes
	// after going offline).
	EphemeralMinutes = 5
)

func newInstallerID() string {
	var raw [10]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(raw[:]))
}

func encodeAddrs(addrs []ma.Multiaddr) [][]byte { return mesh.EncodeAddrs(addrs) }

// installerLive reports whether in is neither revoked nor expired at now.
func installerLive(in *pb.Installer, now time.Time) bool {
	return in.GetRevokedUnix() == 0 && now.Before(time.Unix(in.GetBody().GetNotAfterUnix(), 0))
}

func checkValidity(d time.Duration) error {
	if d < installerkey.MinValidity || d > installerkey.MaxValidity {
		return catalog.Errorf(catalog.CodeOutOfRange, "An installer is valid for 10m to 1y (8760h); got %s.", d)
	}
	return nil
}

// validateDefaults checks the defaults against the site's records and the
// caller's rights, filling in what was left to the site.
func validateDefaults(tx *Tx, c *caller, d *pb.InstallerDefaults) error {
	if d.GetGroup() == "" {
		d.Group = words.PersonalGroupPrefix + c.name()
	}
	if err := checkGroupTarget(tx, c, d.GetGroup(), "technicians may create installers only for their own personal list or a jump group they belong to, not"); err != nil {
		return err
	}
	if err := checkLength("name", d.GetName(), MaxPeerNameLength); err != nil {
		return err
	}
	if err := checkLength("tag", d.GetTag(), MaxTagLength); err != nil {
		return err
	}
	if err := checkLength("comments", d.GetComments(), MaxCommentsLength); err != nil {
		return err
	}
	if err := checkPolicies(tx, d); err != nil {
		return err
	}
	return checkOffline(tx, d)
}

func hasGroup(groups []*pb.Group, code string) bool {
	for _, g := range groups {
		if g.GetCode() == code {
			return true
		}
	}
	return false
}

func checkLength(field, v string, max int) error {
	if n := utf8.RuneCountInString(v); n > max {
		return catalog.Errorf(catalog.CodeInvalidArgument, "The %s is at most %d characters (got %d).", field, max, n)
	}
	if !utf8.ValidString(v) {
		return catalog.Errorf(catalog.CodeInvalidArgument, "The %s is not valid UTF-8.", field)
	}
	return nil
}

func checkPolicies(tx *Tx, d *pb.InstallerDefaults) error {
	if n := d.GetJumpPolicy(); n != "" {
		if p, err := tx.JumpPolicy(n); err != nil || p == nil {
			if err == nil {
				err = catalog.Errorf(catalog.CodePolicyNotFound, "(jump policy %s)", n)
			}
			return err
		}
	}
	for _, n := range []string{d.GetSessionPolicyPresent(), d.GetSessionPolicyNotPresent()} {
		if n == "" {
			continue
		}
		if p, err := tx.SessionPolicy(n); err != nil || p == nil {
			if err == nil {
				err = catalog.Errorf(catalog.CodePolicyNotFound, "(session policy %s)", n)
			}
			return err
		}
	}
	return nil
}

func checkOffline(tx *Tx, d *pb.InstallerDefaults) error {
	if d.GetEphemeral() {
		if d.GetMaxOfflineMinutes() != 0 && d.GetMaxOfflineMinutes() != EphemeralMinutes {
			return catalog.Errorf(catalog.CodeInvalidArgument, "--ephemeral means %d minutes; do not also give --max-offline-minutes %d.", EphemeralMinutes, d.GetMaxOfflineMinutes())
		}
		d.MaxOfflineMinutes = EphemeralMinutes
	} else if m := d.GetMaxOfflineMinutes(); m != 0 && (m < MinMaxOfflineMinutes || m > MaxMaxOfflineMinutes) {
		return catalog.Errorf(catalog.CodeOutOfRange, "max-offline-minutes is %d to %d (got %d).", MinMaxOfflineMinutes, MaxMaxOfflineMinutes, m)
	}
	if d.GetConnectionType() == pb.ConnectionType_CONNECTION_TYPE_UNSPECIFIED {
		st, err := tx.Settings()
		if err != nil {
			return err
		}
		d.ConnectionType = st.GetDefaultConnectionType()
	}
	if _, ok := pb.ConnectionType_name[int32(d.GetConnectionType())]; !ok {
		return catalog.Errorf(catalog.CodeInvalidArgument, "(connection type %d)", d.GetConnectionType())
	}
	return nil
}

func (s *Service) installerCreate(c *caller, r *pb.InstallerCreateRequest) (*pb.Response, error) {
	validFor := time.Duration(r.GetValidForSeconds()) * time.Second
	if err := checkValidity(validFor); err != nil {
		return nil, err
	}
	if r.GetOverridable()&^uint32(installerkey.AllFields) != 0 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(unknown override bits %#x)", r.GetOverridable())
	}
	d := proto.CloneOf(r.GetDefaults())
	if d == nil {
		d = &pb.InstallerDefaults{}
	}
	now := s.clock.Now()
	body := &pb.InstallerKeyBody{
		InstallerId: newInstallerID(), SiteId: []byte(s.siteID),
		SiteAddrs: encodeAddrs(s.coordinatorAddrs()), Relays: encodeAddrs(s.relays),
		Defaults: d, Overridable: r.GetOverridable(),
		NotBeforeUnix: now.Unix(), NotAfterUnix: now.Add(validFor).Unix(),
	}
	var in *pb.Installer
	err := s.update(func(tx *Tx) error {
		if err := validateDefaults(tx, c, d); err != nil {
			return err
		}
		if err := s.checkJumpoint(tx, body, r); err != nil {
			return err
		}
		key, err := installerkey.Sign(body, s.signer)
		if err != nil {
			return catalog.Internalf("(signing the installer key: %w)", err)
		}
		in = &pb.Installer{Id: body.GetInstallerId(), Key: key, Body: body, CreatedBy: c.name(), CreatedUnix: now.Unix()}
		return tx.PutInstaller(in)
	})
	if err != nil {
		return nil, err
	}
	change := fmt.Sprintf("defaults %s, valid until %s", recordText(d), unixText(body.GetNotAfterUnix()))
	if refs := body.GetJumpoints(); len(refs) > 0 {
		names := make([]string, len(refs))
		for i, j := range refs {
			names[i] = j.GetName()
		}
		change += ", through jumpoints " + strings.Join(names, ", ")
	}
	s.adminChanged(c, adminChange{Action: ActionInstallerCreate, Target: in.GetId(), Change: change})
	return &pb.Response{Body: &pb.Response_Installer{Installer: in}}, nil
}

// checkJumpoint puts the jumpoints the request names into the key. The
// old single field (a bare peer ID) is refused: a key names jumpoints with
// their addresses now, which only the names resolve to.
func (s *Service) checkJumpoint(tx *Tx, body *pb.InstallerKeyBody, r *pb.InstallerCreateRequest) error {
	if r.GetJumpoint() != "" {
		return catalog.Errorf(catalog.CodeInvalidArgument, "This coordinator takes jumpoints by name in the jumpoints field; the single jumpoint field (%q) is no longer read.", r.GetJumpoint())
	}
	if len(r.GetJumpoints()) == 0 {
		return nil
	}
	refs, err := s.resolveJumpoints(tx, r.GetJumpoints())
	if err != nil {
		return err
	}
	body.Jumpoints = refs
	return nil
}

func (s *Service) installerList(c *caller, r *pb.InstallerListRequest) (*pb.Response, error) {
	now := s.clock.Now()
	var out []*pb.Installer
	err := s.view(func(tx *Tx) error {
		all, err := tx.Installers()
		for _, in := range all {
			if !c.isAdmin() && in.GetCreatedBy() != c.name() {
				continue
			}
			if r.GetIncludeRevoked() || installerLive(in, now) {
				out = append(out, in)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Installers{Installers: &pb.InstallerList{Installers: out}}}, nil
}

// loadOwnInstaller loads id if the caller may manage it (admin or creator).
func loadOwnInstaller(tx *Tx, c *caller, id string) (*pb.Installer, error) {
	in, err := tx.Installer(id)
	if err != nil {
		return nil, err
	}
	if in == nil {
		return nil, catalog.Errorf(catalog.CodeInstallerNotFound, "(%s)", id)
	}
	if !c.isAdmin() && in.GetCreatedBy() != c.name() {
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "(installer %s was created by %s)", id, in.GetCreatedBy())
	}
	return in, nil
}

func (s *Service) installerShow(c *caller, id string) (*pb.Response, error) {
	var in *pb.Installer
	err := s.view(func(tx *Tx) (err error) {
		in, err = loadOwnInstaller(tx, c, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Installer{Installer: in}}, nil
}

// installerExtend re-signs the installer's key with a window ending
// valid_for from now. The old key string stays valid until its own end.
func (s *Service) installerExtend(c *caller, r *pb.InstallerExtendRequest) (*pb.Response, error) {
	validFor := time.Duration(r.GetValidForSeconds()) * time.Second
	if err := checkValidity(validFor); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	var in *pb.Installer
	var before int64
	err := s.update(func(tx *Tx) (err error) {
		if in, err = loadOwnInstaller(tx, c, r.GetId()); err != nil {
			return err
		}
		if in.GetRevokedUnix() != 0 {
			return catalog.Errorf(catalog.CodeKeyRevoked, "(installer %s was deleted; create a new one)", in.GetId())
		}
		before = in.GetBody().GetNotAfterUnix()
		in.Body.NotAfterUnix = now.Add(validFor).Unix()
		if in.Key, err = installerkey.Sign(in.GetBody(), s.signer); err != nil {
			return catalog.Internalf("(signing the installer key: %w)", err)
		}
		return tx.PutInstaller(in)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionInstallerExtend, Target: in.GetId(),
		Change: changeText([3]string{"valid until", unixText(before), unixText(in.GetBody().GetNotAfterUnix())})})
	return &pb.Response{Body: &pb.Response_Installer{Installer: in}}, nil
}

// installerDelete revokes: the record stays as a tombstone so the key is
// refused as revoked, not as unknown.
func (s *Service) installerDelete(c *caller, id string) (*pb.Response, error) {
	now := s.clock.Now()
	err := s.update(func(tx *Tx) error {
		in, err := loadOwnInstaller(tx, c, id)
		if err != nil {
			return err
		}
		if in.GetRevokedUnix() != 0 {
			return nil
		}
		in.RevokedUnix, in.RevokedBy = now.Unix(), c.name()
		return tx.PutInstaller(in)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionInstallerDelete, Target: id})
	return ok(), nil
}

func (s *Service) installerCheck(key string) (*pb.Response, error) {
	in, err := s.CheckInstallerKey(key)
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Installer{Installer: in}}, nil
}

// CheckInstallerKey verifies key as the coordinator does at a peer's first
// contact: signature, this site, its own window, and the installer record
// (unknown or deleted installers are refused as revoked).
func (s *Service) CheckInstallerKey(key string) (*pb.Installer, error) {
	k, err := installerkey.Verify(key, installerkey.VerifyOptions{Site: s.siteID, Now: s.clock.Now()})
	if err != nil {
		return nil, err
	}
	return s.liveInstaller(k.Body.GetInstallerId())
}

// liveInstaller is the installer record a verified key names, refused as
// revoked when the site does not know it or it was deleted.
func (s *Service) liveInstaller(id string) (*pb.Installer, error) {
	var in *pb.Installer
	err := s.view(func(tx *Tx) (err error) {
		in, err = tx.Installer(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if in == nil {
		return nil, catalog.Errorf(catalog.CodeKeyRevoked, "(installer %s is unknown to this site)", id)
	}
	if in.GetRevokedUnix() != 0 {
		return nil, catalog.Errorf(catalog.CodeKeyRevoked, "(installer %s was deleted by %s at %s)", in.GetId(), in.GetRevokedBy(), time.Unix(in.GetRevokedUnix(), 0).UTC().Format(time.RFC3339))
	}
	return in, nil
}
