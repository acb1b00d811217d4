package coordinator

import "golang.org/x/time/rate"

// The connection rate is the site's (issue 16): connection-rate bounds the
// peers admitted per second by all of its coordinators together, so a
// storm after one coordinator's death, whose peers all come back through
// the others, is paced as one. Each live member admits its share,
// connection-rate ÷ live members (members.go's view of c/), with a burst
// of one second of that share; admitAt reads the share at every hello,
// so a member that joins or leaves (a lease that ends) changes every
// other member's share at its next hello. The sum stays within the bound
// except while members disagree on how many there are: from a member's
// registration to the others' watch seeing it (milliseconds), and from a
// member's death to its lease's end (up to the 10 s TTL), when the
// survivors still count the dead one and admit less, not more.
// ServiceConfig.AdmissionRate (benchmarks, labs) is shared the same way.

// rateShare is this member's part of the site's rate.
func (s *Service) rateShare(site rate.Limit) rate.Limit {
	return site / rate.Limit(s.liveMembers())
}

// liveMembers counts the site's live coordinators, this one included.
func (s *Service) liveMembers() int {
	v := s.memberView
	if v == nil {
		return 1
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	return 1 + len(v.others)
}
