package jumpoint

import "time"

// ACLFetchedAt is when the jumpoint last fetched its ACL.
func ACLFetchedAt(j *Jumpoint) time.Time { return time.Unix(0, j.aclAt.Load()) }
