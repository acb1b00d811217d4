package coordinator

import "sync"

// HoldWatchForTest holds every change c's store watch brings (how its
// registry follows the site's other coordinators, presence.go) until
// release is called; release may be called more than once.
func (c *Coordinator) HoldWatchForTest() (release func()) {
	held := make(chan struct{})
	hold := func() { <-held }
	c.store.watchHold.Store(&hold)
	var once sync.Once
	return func() { once.Do(func() { close(held) }) }
}

// OnCatchUpWaitForTest runs fn each time a lookup that missed starts
// waiting for c's store watch to catch up (etcd; store_etcd_catchup.go).
func (c *Coordinator) OnCatchUpWaitForTest(fn func()) {
	if e, ok := c.store.kv.(*etcdKV); ok {
		e.catchUpWaiting.Store(&fn)
	}
}
