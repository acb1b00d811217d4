// Package ops is a daemon's operations endpoint: Prometheus metrics at
// /metrics and a health document at /healthz, on a local HTTP address (the
// coordinator's and the relay's --http-addr). The daemon gives its own
// registry and health handler; this package owns the listener and the
// serving goroutine, so a daemon's Close stops and waits for it with one
// call.
//
// It must stay this small: no handler of its own beyond the two routes, no
// authentication (the default addresses are on the loopback interface; an
// operator who exposes them chooses who may scrape).
package ops
