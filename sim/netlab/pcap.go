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

// Capture records every frame of the host's interfaces (all of them, for a
// host on several networks; not loopback), both directions, into a pcap
// file at path (classic libpcap format, Ethernet link type, microsecond
// timestamps; Wireshark and tcpdump -r read it). It runs until the
// returned Capture is closed, or the lab is.
func (h *Host) Capture(path string) (*Capture, error) {
	var fd int
	ifindex := map[int]bool{}
	err := h.Do(func() error {
		for _, n := range h.nics {
			i, err := net.InterfaceByName(n.Name)
			if err != nil {
				return err
			}
			ifindex[i.Index] = true
		}
		// ETH_P_ALL in network byte order: every protocol, in and out.
		proto := int(htons(unix.ETH_P_ALL))
		var err error
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		// Bound to one interface, or to all of them (index 0) when the
		// host has several; frames of others (loopback) are skipped.
		bind := 0
		if len(h.nics) == 1 {
			for i := range ifindex {
				bind = i
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: bind}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding the packet socket: %w", err)
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
	c := &Capture{fd: fd, f: f, w: bufio.NewWriter(f), ifindex: ifindex, stop: make(chan struct{}),
		done: make(chan struct{}), flush: make(chan chan error)}
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
	fd      int
	f       *os.File
	w       *bufio.Writer
	ifindex map[int]bool // the host's interfaces
	stop    chan struct{}
	done    chan struct{}
	flush   chan chan error // Flush's requests to the reader
	once    sync.Once
	frames  int
	err     error
}

// Flush writes every frame the kernel has queued for the capture so far to
// the file, so that the file can be read while the capture goes on. It
// waits at most about captureWake for the reader.
func (c *Capture) Flush() error {
	reply := make(chan error, 1)
	select {
	case c.flush <- reply:
	case <-c.done:
		return errors.New("capture: closed")
	}
	select {
	case err := <-reply:
		return err
	case <-c.done:
		return errors.New("capture: closed")
	}
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
			case reply := <-c.flush:
				reply <- c.drain(buf)
				continue
			default:
			}
		}
		n, from, err := unix.Recvfrom(c.fd, buf, flags)
		switch {
		case errors.Is(err, unix.EAGAIN) && flags&unix.MSG_DONTWAIT != 0:
			return // drained after Close
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			c.err = fmt.Errorf("capture: %w", err)
			return
		}
		if !c.ours(from) {
			continue
		}
		if err := c.record(buf, n); err != nil {
			c.err = err
			return
		}
	}
}

// ours reports whether a frame came from one of the host's interfaces.
func (c *Capture) ours(from unix.Sockaddr) bool {
	ll, ok := from.(*unix.SockaddrLinklayer)
	return !ok || c.ifindex[ll.Ifindex]
}

// drain records what the socket holds now (at most captureDrainMax frames)
// and flushes the file.
func (c *Capture) drain(buf []byte) error {
	for range captureDrainMax {
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		if !c.ours(from) {
			continue
		}
		if err := c.record(buf, n); err != nil {
			return err
		}
	}
	return c.w.Flush()
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
