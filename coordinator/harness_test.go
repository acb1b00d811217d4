package coordinator_test

import (
	"context"
	"testing"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// harness adapts coordinatortest.Site to these tests' vocabulary.
type harness struct {
	*coordinatortest.Site[*console.Client]
	clock *mesh.ManualClock
	coord *coordinator.Coordinator
	admin *console.Client
}

var testStart = coordinatortest.Start

func newHarness(t *testing.T) *harness { return newHarnessTB(t) }

func newHarnessTB(t testing.TB) *harness {
	s := coordinatortest.New(t, console.Login)
	return &harness{Site: s, clock: s.Clock, coord: s.Coord, admin: s.Admin}
}

func (h *harness) ctx() context.Context { return h.Ctx() }

func (h *harness) start() {
	h.Start()
	h.coord = h.Coord
}

func (h *harness) login(home, code string) *console.Client { return h.Login(home, code) }

func (h *harness) tryLogin(home, code string) (*console.Client, *pb.LoginResponse, error) {
	return h.TryLogin(home, code)
}

func (h *harness) user(name string, role pb.Role) *console.Client { return h.User(name, role) }

func wantCode(t *testing.T, err error, code catalog.Code) {
	t.Helper()
	coordinatortest.WantCode(t, err, code)
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
