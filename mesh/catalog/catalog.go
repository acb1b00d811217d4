package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Code is the stable identifier of a user-facing error. Codes never change
// meaning once released; scripts match on them (`--json` prints them).
type Code string

// Errors from the seeds' error-message appendix (Jump Client → peer, support
// session → session; see the package doc for why we reword).
const (
	CodeBuildLimitTotal        Code = "build_limit_total"
	CodeBuildLimitActive       Code = "build_limit_active"
	CodePinRequestPending      Code = "pin_request_pending"
	CodeAlreadyPinned          Code = "already_pinned"
	CodeNoUserInSession        Code = "no_user_in_session"
	CodeSessionUserOffline     Code = "session_user_offline"
	CodePeerNotFound           Code = "peer_not_found"
	CodePeerOffline            Code = "peer_offline"
	CodePeerUninstalled        Code = "peer_uninstalled"
	CodeActiveLimitReached     Code = "active_limit_reached"
	CodeServerBusy             Code = "server_busy"
	CodeSessionInternal        Code = "session_internal"
	CodeSessionInternalTimeout Code = "session_internal_timeout"
	CodeActivePeerNotConnected Code = "active_peer_not_connected"
	CodeConnectTimeout         Code = "connect_timeout"
	CodePeerDisabled           Code = "peer_disabled"
	CodePeerOtherVersion       Code = "peer_other_version"
)

// Errors of jumpmesh itself.
const (
	CodeInternal            Code = "internal"
	CodeInvalidArgument     Code = "invalid_argument"
	CodeOutOfRange          Code = "out_of_range"
	CodeUnknownTechnician   Code = "unknown_technician"
	CodePermissionDenied    Code = "permission_denied"
	CodeNotLoggedIn         Code = "not_logged_in"
	CodeInviteInvalid       Code = "invite_invalid"
	CodeInviteExpired       Code = "invite_expired"
	CodeKeyAlreadyBound     Code = "key_already_bound"
	CodeUserNotFound        Code = "user_not_found"
	CodeLastAdmin           Code = "last_admin"
	CodeGroupNotFound       Code = "group_not_found"
	CodeGroupExists         Code = "group_exists"
	CodeMemberNotFound      Code = "member_not_found"
	CodePolicyNotFound      Code = "policy_not_found"
	CodePolicyExists        Code = "policy_exists"
	CodeUserExists          Code = "user_exists"
	CodeInUse               Code = "in_use"
	CodeInstallerNotFound   Code = "installer_not_found"
	CodeOverrideNotAllowed  Code = "override_not_allowed"
	CodeKeyBadEncoding      Code = "key_bad_encoding"
	CodeKeyBadSignature     Code = "key_bad_signature"
	CodeKeyOtherSite        Code = "key_other_site"
	CodeKeyNotYetValid      Code = "key_not_yet_valid"
	CodeKeyExpired          Code = "key_expired"
	CodeKeyRevoked          Code = "key_revoked"
	CodeKeyUnknownVersion   Code = "key_unknown_version"
	CodeSiteExists          Code = "site_exists"
	CodeSiteNotFound        Code = "site_not_found"
	CodeCoordinatorDown     Code = "coordinator_unreachable"
	CodeProtocol            Code = "protocol_error"
	CodePeerAmbiguous       Code = "peer_ambiguous"
	CodeGrantInvalid        Code = "grant_invalid"
	CodeGrantExpired        Code = "grant_expired"
	CodeGrantRevoked        Code = "grant_revoked"
	CodeJumpPolicyClosed    Code = "jump_policy_closed"
	CodePolicyMissing       Code = "policy_missing"
	CodeAuditFailed         Code = "audit_failed"
	CodeSessionInUse        Code = "session_in_use"
	CodeConsentRequired     Code = "consent_required"
	CodeForwardUnreachable  Code = "forward_unreachable"
	CodeCopyDamaged         Code = "copy_damaged"
	CodeCopyBadPath         Code = "copy_bad_path"
	CodeCopyNotFound        Code = "copy_not_found"
	CodeConnectionLost      Code = "connection_lost"
	CodeJumpointUnreachable Code = "jumpoint_unreachable"
	CodeJumpointTarget      Code = "jumpoint_target_unreachable"
	CodeWakeNotNeeded       Code = "wake_not_needed"
	CodeWakeNoNeighbor      Code = "wake_no_neighbor"
	CodeWakeCooldown        Code = "wake_cooldown"
	CodeWakeNotAllowed      Code = "wake_not_allowed"
	CodeWakeFailed          Code = "wake_failed"
	CodeWakeTimeout         Code = "wake_timeout"
	CodePeerPassive         Code = "peer_passive"
	CodeStoreUnreachable    Code = "store_unreachable"
	CodeStoreTLS            Code = "store_tls"
	CodeStoreAuth           Code = "store_auth"
	CodeStoreInUse          Code = "store_in_use"
	CodeStoreNotEmpty       Code = "store_not_empty"
)

// catalog is the one table of user-facing messages.
var catalog = map[Code]string{
	CodeBuildLimitTotal:        "The total number of peers that can be deployed for this site has been reached.",
	CodeBuildLimitActive:       "The total number of active peers that can be deployed for this site has been reached.",
	CodePinRequestPending:      "The session already has a pending pin request.",
	CodeAlreadyPinned:          "The host is already pinned.",
	CodeNoUserInSession:        "There is no user in the session.",
	CodeSessionUserOffline:     "The user in the session is not online.",
	CodePeerNotFound:           "The peer does not exist.",
	CodePeerOffline:            "The peer is offline.",
	CodePeerUninstalled:        "The specified peer has been uninstalled.",
	CodeActiveLimitReached:     "The number of active peers has been reached.",
	CodeServerBusy:             "The server is currently too busy. Please try again later.",
	CodeSessionInternal:        "An internal error occurred while creating the session.",
	CodeSessionInternalTimeout: "An internal operation took too long trying to create the session.",
	CodeActivePeerNotConnected: "The active peer is not connected.",
	CodeConnectTimeout:         "Timed out while trying to connect to the peer.",
	CodePeerDisabled:           "The peer has been disabled by the user and does not allow a session to start at this time.",
	CodePeerOtherVersion:       "The peer is running a different version and will not attempt to update. Please try again once the update is done.",

	CodeInternal:            "An internal error occurred.",
	CodeInvalidArgument:     "Invalid argument.",
	CodeOutOfRange:          "Value out of range.",
	CodeUnknownTechnician:   "The coordinator does not know this console's key (never logged in, or the technician was removed). Ask an administrator for an invite and run `jumpmesh login`.",
	CodePermissionDenied:    "Your role does not allow this operation.",
	CodeNotLoggedIn:         "This console is not logged in to a site. Run `jumpmesh login COORDINATOR-ADDR CODE` with an invite code.",
	CodeInviteInvalid:       "The invite code is not valid (mistyped, or already used).",
	CodeInviteExpired:       "The invite code has expired. Ask an administrator for a new one.",
	CodeKeyAlreadyBound:     "This console key is already bound to another technician.",
	CodeUserNotFound:        "The user does not exist.",
	CodeLastAdmin:           "The site must keep at least one administrator.",
	CodeGroupNotFound:       "The jump group does not exist.",
	CodeGroupExists:         "A jump group with this code name already exists.",
	CodeMemberNotFound:      "The user is not a member of this jump group.",
	CodePolicyNotFound:      "The policy does not exist.",
	CodePolicyExists:        "A policy with this name already exists.",
	CodeUserExists:          "A user with this name already exists.",
	CodeInUse:               "It is still in use; change or delete what uses it first.",
	CodeInstallerNotFound:   "The installer does not exist.",
	CodeOverrideNotAllowed:  "The installer does not allow this field to be overridden.",
	CodeKeyBadEncoding:      "The installer key is malformed (bad encoding); copy it again in full.",
	CodeKeyBadSignature:     "The installer key's signature is not valid.",
	CodeKeyOtherSite:        "The installer key belongs to another site.",
	CodeKeyNotYetValid:      "The installer key is not valid yet.",
	CodeKeyExpired:          "The installer key has expired; create a new installer.",
	CodeKeyRevoked:          "The installer key has been revoked (its installer was deleted).",
	CodeKeyUnknownVersion:   "The installer key has a version this jumpmesh does not know; upgrade jumpmesh.",
	CodeSiteExists:          "A site already exists in this data directory; refusing to overwrite it.",
	CodeSiteNotFound:        "No site in this data directory; run `jumpmesh coordinator init` first.",
	CodeCoordinatorDown:     "Cannot reach the coordinator.",
	CodeProtocol:            "The other side sent a message this jumpmesh does not understand.",
	CodePeerAmbiguous:       "Several peers match; name one by its peer ID or a unique name.",
	CodeGrantInvalid:        "The jump grant was refused by the peer.",
	CodeGrantExpired:        "The jump grant may no longer open channels (its time on this connection is over); jump again for a new one.",
	CodeGrantRevoked:        "The coordinator withdrew this jump grant (a user, policy or jump window changed); jump again, if you are still allowed.",
	CodeJumpPolicyClosed:    "The peer's jump policy does not allow access at this time.",
	CodePolicyMissing:       "A policy this peer names no longer exists, so the peer allows no jumps; an administrator must set the peer's policies again.",
	CodeAuditFailed:         "The coordinator could not record this in the audit log, so it did not grant it; try again, and tell the site's administrator.",
	CodeForwardUnreachable:  "The peer could not connect to the forward's target.",
	CodeCopyDamaged:         "A copied file arrived damaged (its SHA-256 or size did not match) and was not kept.",
	CodeCopyBadPath:         "The copy names a path that is unsafe or unusable (absolute inside a tree, '..', or not writable).",
	CodeCopyNotFound:        "The copy names a file or directory that does not exist.",
	CodeConnectionLost:      "The connection to the peer was lost during the session (the peer, its network or the relay went away); jump again to reconnect.",
	CodeConsentRequired:     "The session policy requires the consent of the user logged in on the host, and this peer cannot ask for it yet.",
	CodeJumpointUnreachable: "Cannot reach the jumpoint (it is down, or no route from here reaches it).",
	CodeJumpointTarget:      "The jumpoint could not connect to the target on its network.",
	CodeWakeNotNeeded:       "The peer is online; it does not need waking.",
	CodeWakeNoNeighbor:      "No online peer shares the peer's gateway, so none can send it a Wake-on-LAN packet.",
	CodeWakeCooldown:        "The peer was asked to wake less than 30 seconds ago; try again after the wait.",
	CodeWakeNotAllowed:      "Waking peers is turned off for this site (setting allow-wake).",
	CodeWakeFailed:          "No neighbour could send the wake packet.",
	CodeWakeTimeout:         "The peer did not come online after the wake attempt.",
	CodePeerPassive:         "The peer is passive: it is not connected and waits for a wake command.",
	CodeStoreUnreachable:    "Cannot reach the site's etcd store: no endpoint answered (check --store, that etcd runs, and the network).",
	CodeStoreTLS:            "The TLS connection to etcd failed (check --etcd-cacert, --etcd-cert and --etcd-key, and whether etcd serves TLS on that port).",
	CodeStoreAuth:           "The etcd store refused this coordinator's credentials (check --etcd-user and --etcd-password, or the client certificate's user).",
	CodeStoreInUse:          "Another coordinator is serving this site under the same instance name (give each its own --instance), or coordinator migrate is writing to its etcd prefix.",
	CodeStoreNotEmpty:       "The destination store already holds records; refusing to overwrite them (--force replaces them).",
	CodeSessionInUse:        "Another technician is in a session with this peer and concurrent jumps are not allowed; ask them for an invitation.",
}

// reserved are catalog codes of the seeds' appendix that no jumpmesh
// feature returns yet (pinning, session users, the active-peer limit). They
// keep their stable names so a future feature reuses them, and `jumpmesh
// errors` marks them, so nobody scripts against an error that cannot come.
// A test keeps this set exact: a reserved code nothing returns, every other
// code returned somewhere.
var reserved = map[Code]bool{
	CodePinRequestPending: true, CodeAlreadyPinned: true, CodeNoUserInSession: true,
	CodeSessionUserOffline: true, CodeActiveLimitReached: true, CodeSessionInternalTimeout: true,
}

// Reserved reports whether c is kept for a feature that does not exist yet:
// nothing returns it.
func (c Code) Reserved() bool { return reserved[c] }

// Message is the catalog's English message for c.
func (c Code) Message() string {
	if m, ok := catalog[c]; ok {
		return m
	}
	return "Unknown error (" + string(c) + ")."
}

// Known reports whether c is in the catalog.
func (c Code) Known() bool { _, ok := catalog[c]; return ok }

// Codes lists every catalog code, sorted.
func Codes() []Code {
	out := make([]Code, 0, len(catalog))
	for c := range catalog {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Error is a user-facing error: a catalog code, an optional detail saying
// what exactly was wrong, and an optional cause.
type Error struct {
	Code   Code
	Detail string
	Err    error
	// Internal marks a Detail that describes this process's insides (a
	// store failure, a file path of the server): it is for this process's
	// log, and ErrorToPB sends InternalNote in its place.
	Internal bool
}

// InternalNote is the detail a remote caller gets in place of an internal
// one: the party that failed logged the details.
const InternalNote = "(the details are in the log of the party that answered)"

// Internalf makes a CodeInternal error whose detail stays in this process
// (see Error.Internal). A %w verb sets the cause.
func Internalf(format string, args ...any) *Error {
	e := Errorf(CodeInternal, format, args...)
	e.Internal = true
	return e
}

// Errorf makes an *Error with a formatted detail. A %w verb in format sets
// the cause.
func Errorf(code Code, format string, args ...any) *Error {
	if format == "" {
		return &Error{Code: code}
	}
	wrapped := fmt.Errorf(format, args...)
	e := &Error{Code: code, Detail: wrapped.Error()}
	switch w := wrapped.(type) {
	case interface{ Unwrap() error }:
		e.Err = w.Unwrap()
	case interface{ Unwrap() []error }:
		// Several %w verbs: errors.Unwrap would drop every cause, so keep
		// the joined error, through which errors.Is and As reach each one.
		e.Err = wrapped
	}
	return e
}

// NewError makes an *Error without detail.
func NewError(code Code) *Error { return &Error{Code: code} }

func (e *Error) Error() string {
	msg := e.Code.Message()
	if e.Detail != "" {
		msg += " " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Detail == "" && t.Err == nil
}

// CodeOf returns the catalog code of err, CodeInternal for errors that carry
// none, and "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// HasCode reports whether err carries code.
func HasCode(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// ErrorToPB turns err into its wire form for a remote party: the code, the
// catalog message and the detail. What describes this process's insides
// stays here: an error without a code travels as CodeInternal, and it and
// an Internal error carry InternalNote instead of their text. The caller
// logs err itself (the coordinator logs every CodeInternal it answers).
func ErrorToPB(err error) *pb.Error {
	if err == nil {
		return nil
	}
	code, detail, internal := errorParts(err)
	if internal {
		detail = InternalNote
	}
	return &pb.Error{Code: string(code), Message: code.Message(), Detail: detail}
}

// LocalErrorParts is err's code, catalog message and full detail, internal
// text included: what a process shows its own user (the CLI's --json).
func LocalErrorParts(err error) (code Code, message, detail string) {
	code, detail, _ = errorParts(err)
	return code, code.Message(), detail
}

func errorParts(err error) (code Code, detail string, internal bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Detail, e.Internal
	}
	return CodeInternal, err.Error(), true
}

// ErrorFromPB turns a wire error back into an *Error. The local catalog
// message wins over the remote one; an unknown code keeps the remote text.
func ErrorFromPB(p *pb.Error) error {
	if p == nil {
		return nil
	}
	code := Code(p.GetCode())
	if code == "" {
		code = CodeInternal
	}
	detail := p.GetDetail()
	if !code.Known() && p.GetMessage() != "" {
		detail = strings.TrimSpace(p.GetMessage() + " " + detail)
	}
	return &Error{Code: code, Detail: detail}
}
