package coordinator_test

import (
	"context"
	"encoding/binary"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// stranger is a throwaway libp2p host with a fresh identity, connected to
// the site's coordinator over TCP: what anyone on the Internet can be.
func stranger(t *testing.T, s *coordinatortest.Site[*console.Client]) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	info, err := lpeer.AddrInfoFromString(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(s.Ctx(), *info); err != nil {
		t.Fatal(err)
	}
	return h
}

// sendFrame opens a stream of protocol pid to the coordinator and writes
// one length-delimited message body, then reads one reply into reply. It
// returns nil only if a whole reply came back.
func sendFrame(ctx context.Context, h host.Host, site lpeer.ID, pid protocol.ID, body []byte, reply proto.Message) error {
	st, err := h.NewStream(ctx, site, pid)
	if err != nil {
		return err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	hdr := binary.AppendUvarint(nil, uint64(len(body)))
	if _, err := st.Write(hdr); err != nil {
		st.Reset()
		return err
	}
	if _, err := st.Write(body); err != nil {
		st.Reset()
		return err
	}
	if pid == control.Protocol {
		_ = st.CloseWrite() // the control protocol's end of request; a peer's stream stays open
	}
	if err := pbio.NewDelimitedReader(st, control.MaxMessage).ReadMsg(reply); err != nil {
		st.Reset()
		return err
	}
	return nil
}

// heapPeak samples the heap in use until stop is closed; the result is its
// largest value.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestStrangerCannotExhaustMemory is issue #11 finding 4: one fresh
// identity opens 600 control streams, each declaring and sending a 1 MiB
// (well-formed) request. Every stream is reset unread, the coordinator's
// heap does not grow with what was declared, and the administrator's
// requests keep working meanwhile. Before the fix every request was read
// (600 MiB allocated) and answered.
func TestStrangerCannotExhaustMemory(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	attacker := stranger(t, s)
	big, err := proto.Marshal(&pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: strings.Repeat("A", 1<<20-16)}}})
	if err != nil {
		t.Fatal(err)
	}
	const streams = 600
	before := heapInuse()
	stop := make(chan struct{})
	peak := heapPeak(stop)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var answered atomic.Int64
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sendFrame(ctx, attacker, s.Coord.ID(), control.Protocol, big, new(pb.Response)) == nil {
				answered.Add(1)
			}
		}()
	}
	// A member's requests are served all along.
	for i := 0; i < 20; i++ {
		if _, err := s.Admin.WhoAmI(s.Ctx()); err != nil {
			t.Fatalf("administrator's request %d during the attack: %v", i, err)
		}
	}
	wg.Wait()
	close(stop)
	growth := int64(<-peak) - int64(before)
	t.Logf("heap in use: %d MiB before, peak growth %d MiB; %d of %d streams answered, %d strangers' streams refused",
		before>>20, growth>>20, answered.Load(), streams, s.Coord.Service().StrangersRefused())
	if answered.Load() != 0 {
		t.Errorf("%d of %d oversized requests from a stranger were read and answered", answered.Load(), streams)
	}
	if growth > 64<<20 {
		t.Errorf("heap grew by %d MiB during the attack, want < 64 MiB", growth>>20)
	}
	if _, err := s.Admin.WhoAmI(s.Ctx()); err != nil {
		t.Fatalf("administrator's request after the attack: %v", err)
	}
}

// TestMembersGetTheFullLimit: a request of 64 KiB is read and answered
// (with a catalog error) for a member, and reset unread for a stranger,
// whose first message may be at most MaxStrangerMessage; a stranger's
// login, 44 bytes, is answered.
func TestMembersGetTheFullLimit(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	long := &pb.Request{Body: &pb.Request_UserShow{UserShow: &pb.NameRequest{Name: strings.Repeat("x", 64<<10)}}}
	_, err := s.Admin.Call(s.Ctx(), long)
	if code := catalog.CodeOf(err); code == catalog.CodeCoordinatorDown || code == "" {
		t.Fatalf("a member's 64 KiB request: %v (code %q), want a catalog refusal", err, code)
	}
	h := stranger(t, s)
	body, _ := proto.Marshal(long)
	if err := sendFrame(s.Ctx(), h, s.Coord.ID(), control.Protocol, body, new(pb.Response)); err == nil {
		t.Fatal("a stranger's 64 KiB request was answered, want the stream reset")
	}
	login, _ := proto.Marshal(&pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: "NOT-A-CODE"}}})
	var resp pb.Response
	if err := sendFrame(s.Ctx(), h, s.Coord.ID(), control.Protocol, login, &resp); err != nil {
		t.Fatalf("a stranger's login was not answered: %v", err)
	}
	if resp.GetError() == nil {
		t.Fatalf("a bad invite code was accepted: %v", &resp)
	}
}

// TestStrangerHelloIsSmall: a host that is not enrolled may send a hello of
// at most MaxStrangerHello; 600 hellos of 200 KiB (under the members' limit,
// mesh.MaxPeerMessage) are reset unread, without the heap growing with
// them. Before the fix each was read, charged to the rate and answered.
func TestStrangerHelloIsSmall(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	attacker := stranger(t, s)
	key := s.Installer(&pb.InstallerDefaults{}, 0, time.Hour).GetKey()
	hello, _ := proto.Marshal(&pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: key,
		Info: &pb.PeerInfo{Hostname: strings.Repeat("h", 200<<10)}}}})
	before := heapInuse()
	stop := make(chan struct{})
	peak := heapPeak(stop)
	var welcomed atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 600 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var down pb.PeerDown
			if sendFrame(ctx, attacker, s.Coord.ID(), peerproto.Protocol, hello, &down) == nil {
				welcomed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	growth := int64(<-peak) - int64(before)
	t.Logf("peak heap growth %d MiB; %d answered", growth>>20, welcomed.Load())
	if welcomed.Load() != 0 {
		t.Errorf("%d oversized hellos were answered", welcomed.Load())
	}
	if growth > 64<<20 {
		t.Errorf("heap grew by %d MiB, want < 64 MiB", growth>>20)
	}
}

// TestGarbageHellosDoNotUseTheRate is issue #11 finding 12: 2,000 hellos
// without a valid installer key are refused before they are charged to the
// connection rate (set to its minimum, 1 per second, so one charge would
// show), and a real host enrolling right after is welcomed at once, not
// told to retry. Before the fix the garbage took the rate and the real host
// was told to retry.
func TestGarbageHellosDoNotUseTheRate(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	if _, err := s.Admin.SetSettings(s.Ctx(), map[string]string{"connection-rate": "1"}); err != nil {
		t.Fatal(err)
	}
	key := s.Installer(&pb.InstallerDefaults{}, 0, time.Hour).GetKey()
	garbage := [][]byte{
		mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{}}}),                            // no key
		mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: "jm1-garbage"}}}), // not a key
		mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: tamper(key)}}}),   // bad signature
	}
	const senders, each = 4, 500
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var refused, other atomic.Int64
	var wg sync.WaitGroup
	for w := range senders {
		h := stranger(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var down pb.PeerDown
				err := sendFrame(ctx, h, s.Coord.ID(), peerproto.Protocol, garbage[(w+i)%len(garbage)], &down)
				if err == nil && down.GetError() != nil {
					refused.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if refused.Load() != senders*each {
		t.Errorf("%d of %d garbage hellos refused with an error (%d otherwise)", refused.Load(), senders*each, other.Load())
	}
	if n := s.Coord.Service().PeerRetries(); n != 0 {
		t.Errorf("%d hellos were told to retry: garbage was charged to the rate", n)
	}
	// A real host enrolls right after: welcomed at once.
	h := stranger(t, s)
	var down pb.PeerDown
	hello := mustMarshal(t, &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: key, Info: &pb.PeerInfo{Hostname: "real-host"}}}})
	if err := sendFrame(s.Ctx(), h, s.Coord.ID(), peerproto.Protocol, hello, &down); err != nil {
		t.Fatal(err)
	}
	if down.GetWelcome() == nil {
		t.Fatalf("the real host was not welcomed at once: %v", &down)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper changes one character in the middle of a key string.
func tamper(key string) string {
	b := []byte(key)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
