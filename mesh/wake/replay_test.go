package wake_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

func TestReplays(t *testing.T) {
	r := wake.NewReplays(3)
	exp := t0.Add(30 * time.Second)
	if !r.Accept([]byte("a"), exp, t0) {
		t.Fatal("a new nonce refused")
	}
	if r.Accept([]byte("a"), exp, t0.Add(time.Second)) {
		t.Fatal("a nonce accepted twice")
	}
	if seen, dup := r.Seen([]byte("a"), t0.Add(time.Second)); !seen || !dup {
		t.Fatalf("seconds later: seen %v, duplicate %v", seen, dup)
	}
	if seen, dup := r.Seen([]byte("a"), t0.Add(20*time.Second)); !seen || dup {
		t.Fatalf("20 s later: seen %v, duplicate %v", seen, dup)
	}
	if seen, _ := r.Seen([]byte("b"), t0); seen {
		t.Fatal("an unknown nonce seen")
	}
	// Full of live nonces: a new one is refused (failing closed).
	r.Accept([]byte("b"), exp, t0)
	r.Accept([]byte("c"), t0.Add(10*time.Second), t0)
	if r.Accept([]byte("d"), exp, t0) || r.Len() != 3 {
		t.Fatalf("a full cache took a nonce (len %d)", r.Len())
	}
	// Once "c" expires, its place is free; expired nonces are not seen.
	if !r.Accept([]byte("d"), exp, t0.Add(10*time.Second)) || r.Len() != 3 {
		t.Fatalf("after an expiry: len %d", r.Len())
	}
	if seen, _ := r.Seen([]byte("a"), exp); seen {
		t.Fatal("an expired nonce seen")
	}
	// After every expiry, the nonces can all be forgotten.
	if !r.Accept([]byte("e"), exp.Add(time.Minute), exp) || r.Len() != 1 {
		t.Fatalf("after the expiry of all: len %d", r.Len())
	}
}
