package coordinator_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestWelcomeCarriesNATPrediction: the site's nat-prediction setting
// reaches peers in their welcome (on by default: nat_prediction_off
// unset) and, when an administrator changes it, in the update pushed to
// the peers online; a peer that says hello afterwards is welcomed with it.
func TestWelcomeCarriesNATPrediction(t *testing.T) {
	site, key := pushSite(t, coordinator.Resources{})
	p := newRawPeer(t, site)
	w := p.hello(site, key, "office-01").GetWelcome()
	if w == nil || w.GetNatPredictionOff() {
		t.Fatalf("welcome %v: want prediction on by default", w)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"nat-prediction": "false"}); err != nil {
		t.Fatal(err)
	}
	if u := nextWelcomeUpdate(t, p); !u.GetNatPredictionOff() {
		t.Fatalf("update after nat-prediction=false: %v", u)
	}
	late := newRawPeer(t, site)
	if w := late.hello(site, key, "office-02").GetWelcome(); w == nil || !w.GetNatPredictionOff() {
		t.Fatalf("welcome after nat-prediction=false: %v", w)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"nat-prediction": "true"}); err != nil {
		t.Fatal(err)
	}
	if u := nextWelcomeUpdate(t, late); u.GetNatPredictionOff() {
		t.Fatalf("update after nat-prediction=true: %v", u)
	}
}

// nextWelcomeUpdate reads p's stream up to the next settings update.
func nextWelcomeUpdate(t *testing.T, p *rawPeer) *pb.PeerWelcome {
	t.Helper()
	for {
		var down pb.PeerDown
		if err := p.ms.Read(&down, 10*time.Second); err != nil {
			t.Fatalf("reading an update: %v", err)
		}
		if u := down.GetUpdate(); u != nil {
			return u
		}
	}
}
