package netlab

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openTAP creates a TAP device called name inside ns and returns its file.
// The device lives as long as its namespace. The file is non-blocking, so
// reads go through Go's poller and Close wakes a blocked Read.
func openTAP(ns *netNS, name string) (*os.File, error) {
	var f *os.File
	err := ns.do(func() error {
		// The device is created in the namespace of the thread that opens
		// /dev/net/tun, hence the open inside do.
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("opening /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("creating TAP %s: %w", name, err)
		}
		// Persistent, so closing the file does not unregister the device
		// (one RCU grace period each, serialised under RTNL: tens of ms);
		// it goes with its namespace, in the kernel's batched cleanup.
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			unix.Close(fd)
			return fmt.Errorf("making TAP %s persistent: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "tap:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", ns.name, err)
	}
	return f, nil
}
