package netlab

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Capture records every frame of the host's interface, both directions,
// into a pcap file at path (classic libpcap format, Ethernet link type,
// microsecond timestamps; Wireshark and tcpdump -r read it). It runs until
// the returned Capture is closed, or the lab is.
func (h *Host) Capture(path string) (*Capture, error) {
	ifi := h.Interface()
	var fd int
	err := h.Do(func() error {
		i, err := net.InterfaceByName(ifi)
		if err != nil {
			return err
		}
		// ETH_P_ALL in network byte order: every protocol, in and out.
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: i.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding the packet socket to %s: %w", ifi, err)
		}
		// Reads wake up every so often to notice Close.
		tv := unix.NsecToTimeval(int64(captureWake))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", h.name, err)
	}
	f, err := os.Create(path)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &Capture{fd: fd, f: f, w: bufio.NewWriter(f), stop: make(chan struct{}), done: make(chan struct{})}
	if err := c.header(); err != nil {
		c.release()
		return nil, err
	}
	go c.run()
	if err := h.lab.track(c); err != nil {
		return nil, err
	}
	return c, nil
}

// captureWake bounds how long Close waits for the reader to notice.
const captureWake = 100 * time.Millisecond

// captureDrainMax bounds how many frames Close still reads after the stop.
const captureDrainMax = 4096

// captureSnap is the most of a frame a capture keeps (a jumbo frame's
// worth; lab links carry 1500-byte MTUs).
const captureSnap = 9216

// Capture is a running pcap capture of one interface.
type Capture struct {
	fd     int
	f      *os.File
	w      *bufio.Writer
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	frames int
	err    error
}

// Frames is how many frames the capture has written (valid after Close).
func (c *Capture) Frames() int { return c.frames }

// Close stops the capture, flushes the file and reports the first error
// the capture met.
func (c *Capture) Close() error {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.err = errors.Join(c.err, c.w.Flush(), c.f.Close())
	})
	return c.err
}

func (c *Capture) release() {
	unix.Close(c.fd)
	c.f.Close()
}

// header writes the pcap global header.
func (c *Capture) header() error {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4) // magic, microseconds
	binary.LittleEndian.PutUint16(h[4:], 2)          // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], captureSnap)
	binary.LittleEndian.PutUint32(h[20:], 1) // LINKTYPE_ETHERNET
	_, err := c.w.Write(h[:])
	return err
}

// run reads frames until Close. On Close it drains what the socket still
// holds before returning: a frame the kernel has already queued was seen on
// the wire, and a capture closed right after the last packet must keep it.
func (c *Capture) run() {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, captureSnap)
	flags := unix.MSG_TRUNC
	drained := 0
	for {
		if flags&unix.MSG_DONTWAIT != 0 {
			// A busy link never runs dry: keep at most a socket's worth.
			if drained++; drained > captureDrainMax {
				return
			}
		} else {
			select {
			case <-c.stop:
				flags |= unix.MSG_DONTWAIT
			default:
			}
		}
		n, _, err := unix.Recvfrom(c.fd, buf, flags)
		switch {
		case errors.Is(err, unix.EAGAIN) && flags&unix.MSG_DONTWAIT != 0:
			return // drained after Close
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			c.err = fmt.Errorf("capture: %w", err)
			return
		}
		if err := c.record(buf, n); err != nil {
			c.err = err
			return
		}
	}
}

// record writes one frame of n bytes (of which buf holds at most
// captureSnap) with its pcap record header.
func (c *Capture) record(buf []byte, n int) error {
	var rec [16]byte
	kept := min(n, len(buf))
	now := time.Now()
	binary.LittleEndian.PutUint32(rec[0:], uint32(now.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(now.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(rec[8:], uint32(kept))
	binary.LittleEndian.PutUint32(rec[12:], uint32(n))
	if _, err := c.w.Write(rec[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(buf[:kept]); err != nil {
		return err
	}
	c.frames++
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

var _ io.Closer = (*Capture)(nil)
