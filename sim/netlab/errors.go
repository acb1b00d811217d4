package netlab

import (
	"errors"
	"fmt"
)

var (
	// ErrNotRoot means the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
	ErrNotRoot = errors.New("the network lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	// ErrNoNetns means this kernel or sandbox cannot create network namespaces.
	ErrNoNetns = errors.New("network namespaces are unavailable")
	// ErrTopology wraps every problem found in a topology description.
	ErrTopology = errors.New("invalid topology")
	// ErrClosed is returned by a lab that has been torn down.
	ErrClosed = errors.New("lab closed")
	// ErrUnknown names a host or network the lab does not have.
	ErrUnknown = errors.New("no such host or network")
	// ErrPrefix refuses a clean-up prefix that is not a lab's.
	ErrPrefix = errors.New("not a lab prefix")
	// ErrLeftovers means a teardown found objects it could not remove.
	ErrLeftovers = errors.New("lab objects left behind")
)

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }
