package coordinator

import (
	"testing"
	"time"
)

// Grants and revocations on one timeline, with a clock that stands still
// (as in tests) and within one second (as in life): a revocation covers
// every grant stamped before it, and no grant stamped after it.
func TestRevokerOrdersGrantsAndRevocations(t *testing.T) {
	var r revoker
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	before := r.grantTime(now).Unix()
	through := r.stamp(now)
	after := r.grantTime(now).Unix()
	if before > through || after <= through {
		t.Fatalf("grant %d, revocation through %d, grant %d", before, through, after)
	}
	// A second revocation in the same frozen second still covers the
	// grant stamped after the first one.
	through2 := r.stamp(now)
	if after > through2 {
		t.Fatalf("grant %d not covered by the revocation through %d", after, through2)
	}
	if next := r.grantTime(now.Add(500 * time.Millisecond)).Unix(); next <= through2 {
		t.Fatalf("grant %d not after the revocation through %d", next, through2)
	}
	// A clock already past the revocations is used as it is.
	later := now.Add(time.Hour)
	if got := r.grantTime(later); !got.Equal(later) {
		t.Fatalf("grant time %v, want %v", got, later)
	}
}
