package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Wakers held by other coordinators (etcd). A wake order travels over the
// waker's own connection to the coordinator, so only the coordinator that
// holds a waker can give it the order. A wake asked of A whose wakers
// behind the target's gateway are held by B (by their presence records)
// hands B the order through the store:
//
//	wo/<holder instance>/<order id> → wakeOrder (JSON: the waker, the
//	                                  signed command), under A's lease
//	wr/<order id>                   → wakeReply (JSON: the waker's report,
//	                                  or why there is none), under B's lease
//
// B follows wo/<its instance>/ by watch, gives the command to the waker if
// it holds it (and to no one else), and writes the reply; A follows wr/,
// answers the technician with it as with a waker of its own, and deletes
// both. A waits at most WakeOrderTimeout, as for its own wakers; if B dies
// meanwhile, the order goes with A's wait and B's lease.
//
// What B forwards is A's signed command unchanged: the waker checks the
// site's signature, the target and the expiry as always, so a record under
// wo/ that no coordinator wrote (only the site's etcd user can write
// there) cannot make a waker send anything the site did not sign; and B
// orders only a waker it holds.

const (
	wakeOrderPrefix = "wo/"
	wakeReplyPrefix = "wr/"
)

type wakeOrder struct {
	Waker   []byte `json:"waker"`
	Command []byte `json:"command"` // pb.WakeCommand
}

type wakeReply struct {
	Report []byte `json:"report,omitempty"` // pb.WakeReport
	Error  string `json:"error,omitempty"`
}

// remoteWakes are the orders this coordinator waits on, by order id, and
// the orders of others it is carrying out.
type remoteWakes struct {
	mu      sync.Mutex
	waiting map[string]chan wakeReply
	wg      sync.WaitGroup
}

// orderRemote has the coordinator holding w give it cmd, and waits for the
// report within ctx.
func (s *Service) orderRemote(ctx context.Context, w wakerRef, cmd *pb.WakeCommand) (*pb.WakeReport, error) {
	raw, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	v, err := json.Marshal(wakeOrder{Waker: []byte(w.id), Command: raw})
	if err != nil {
		return nil, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ch := make(chan wakeReply, 1)
	rw := &s.remoteWakes
	rw.mu.Lock()
	if rw.waiting == nil {
		rw.waiting = map[string]chan wakeReply{}
	}
	rw.waiting[id] = ch
	rw.mu.Unlock()
	orderKey := []byte(wakeOrderPrefix + w.holder + "/" + id)
	defer func() {
		rw.mu.Lock()
		delete(rw.waiting, id)
		rw.mu.Unlock()
		err := s.store.Update(func(tx *Tx) error {
			if err := tx.kv.delete(orderKey); err != nil {
				return err
			}
			return tx.kv.delete([]byte(wakeReplyPrefix + id))
		})
		if err != nil {
			s.log.Warn("deleting a wake order given to another coordinator", logError, err)
		}
	}()
	if err := s.store.Update(func(tx *Tx) error { return tx.kv.setLeased(orderKey, v) }); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if len(r.Report) == 0 {
			return nil, errors.New(r.Error)
		}
		rep := &pb.WakeReport{}
		if err := proto.Unmarshal(r.Report, rep); err != nil {
			return nil, err
		}
		var rerr error
		if r.Error != "" {
			rerr = errors.New(r.Error)
		}
		return rep, rerr
	case <-ctx.Done():
		return nil, catalog.Errorf(catalog.CodeWakeFailed, "(%s, held by coordinator %s, did not answer in time)", w.name, w.holder)
	}
}

// followWakeReplies hands the replies of other coordinators to the waits
// of orderRemote.
func (s *Service) followWakeReplies(b watchBatch) {
	rw := &s.remoteWakes
	for _, e := range b.events {
		if e.value == nil {
			continue
		}
		id := strings.TrimPrefix(e.key, wakeReplyPrefix)
		rw.mu.Lock()
		ch := rw.waiting[id]
		rw.mu.Unlock()
		if ch == nil {
			continue // not this coordinator's, or given up
		}
		var r wakeReply
		if err := json.Unmarshal(e.value, &r); err != nil {
			r = wakeReply{Error: "the holder's reply does not decode"}
		}
		select {
		case ch <- r:
		default: // one reply per order
		}
	}
}

// followWakeOrders carries out the orders other coordinators give the
// wakers this one holds (wo/<instance>/).
func (s *Service) followWakeOrders(b watchBatch) {
	for _, e := range b.events {
		if e.value == nil {
			continue // done, or its asker's lease ended
		}
		id := e.key[strings.LastIndexByte(e.key, '/')+1:]
		var o wakeOrder
		cmd := &pb.WakeCommand{}
		if err := json.Unmarshal(e.value, &o); err != nil || proto.Unmarshal(o.Command, cmd) != nil {
			s.log.Warn("a wake order from another coordinator that does not decode: ignored", "key", e.key)
			continue
		}
		waker := peer.ID(o.Waker)
		if s.closing.Load() {
			continue // its asker's wait ends with its timeout
		}
		s.remoteWakes.wg.Add(1)
		go func() {
			defer s.remoteWakes.wg.Done()
			r := s.carryOutWake(waker, cmd)
			v, err := json.Marshal(r)
			if err == nil {
				err = s.store.Update(func(tx *Tx) error { return tx.kv.setLeased([]byte(wakeReplyPrefix+id), v) })
			}
			if err != nil {
				s.log.Warn("answering another coordinator's wake order", logPeer, waker, logError, err)
			}
		}()
	}
}

// carryOutWake gives cmd to waker if this coordinator holds it.
func (s *Service) carryOutWake(waker peer.ID, cmd *pb.WakeCommand) wakeReply {
	if s.closing.Load() || s.peers.session(waker) == nil {
		return wakeReply{Error: "the waker is not held by this coordinator any more"}
	}
	if s.wakeSender == nil {
		return wakeReply{Error: "this coordinator has no network"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), WakeOrderTimeout)
	defer cancel()
	rep, err := s.wakeSender.Order(ctx, waker, cmd)
	var r wakeReply
	if rep != nil {
		r.Report, _ = proto.Marshal(rep)
	}
	if err != nil {
		r.Error = err.Error()
	} else if rep == nil {
		r.Error = "no report"
	}
	return r
}
