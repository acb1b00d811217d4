package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named namespaces; `ip netns exec NAME`
// works on every namespace the lab creates.
const netnsDir = "/run/netns"

// netNS is one named network namespace of a lab.
type netNS struct {
	name string
	h    netns.NsHandle
	nl   *netlink.Handle // used only while building, which Close waits for

	// mu guards h against release: a closed handle's fd number may be
	// reused, and a closed netlink.Handle silently works in the caller's
	// namespace, so nothing may use either once released.
	mu       sync.RWMutex
	released bool
}

// onThread runs f on a locked OS thread of its own and returns the thread to
// the network namespace it started in. f may setns or unshare. If the thread
// cannot be put back, it stays locked and the runtime discards it when the
// goroutine ends, so no other goroutine ever runs in a lab namespace by
// accident. f runs on another goroutine: it must not call t.FailNow.
func onThread(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("reading this thread's namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := callSafely(f)
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("restoring this thread's namespace: %w", err))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

func callSafely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in namespace: %v", r)
		}
	}()
	return f()
}

// inNetns runs f on a thread inside the namespace h.
func inNetns(h netns.NsHandle, f func() error) error {
	return onThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("entering namespace: %w", err)
		}
		return f()
	})
}

// createNetns creates the named namespace /run/netns/name, failing if the name
// is taken. On error nothing is left behind.
func createNetns(name string) (_ *netNS, err error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	f.Close()
	mounted := false
	defer func() {
		if err != nil {
			if mounted {
				_ = unix.Unmount(path, unix.MNT_DETACH)
			}
			_ = os.Remove(path)
		}
	}()
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("%w: unshare: %v", ErrNoNetns, err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting namespace %s: %w", name, err)
		}
		mounted = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink in namespace %s: %w", name, err)
	}
	return &netNS{name: name, h: h, nl: nl}, nil
}

// do runs f on a thread inside the namespace.
func (n *netNS) do(f func() error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.released {
		return ErrClosed
	}
	return inNetns(n.h, f)
}

// nft runs f with an nftables connection into the namespace.
func (n *netNS) nft(f func(c *nftables.Conn) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.released {
		return ErrClosed
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(n.h)))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", n.name, err)
	}
	return f(c)
}

// release closes the lab's own references to the namespace (handle and
// netlink sockets), so the kernel can destroy it once unmounted.
func (n *netNS) release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.released = true
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.h.IsOpen() {
		n.h.Close()
	}
}

// deleteNetns unmounts and removes a named namespace. A missing one is not
// an error.
func deleteNetns(name string) error {
	path := filepath.Join(netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmounting namespace %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing namespace %s: %w", name, err)
	}
	return nil
}

// sysctls writes /proc/sys/net values inside the namespace. Keys missing on
// this kernel (e.g. IPv6 compiled out) are skipped.
func (n *netNS) sysctls(kv map[string]string) error {
	return n.do(func() error {
		for k, v := range kv {
			err := os.WriteFile(filepath.Join("/proc/sys/net", k), []byte(v), 0o644)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("sysctl net/%s=%s in %s: %w", k, v, n.name, err)
			}
		}
		return nil
	})
}

func unshareNet() error { return unix.Unshare(unix.CLONE_NEWNET) }
