package control

import (
	"bytes"
	"strings"
	"testing"

	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestMarshalRequestIsMarshal: for every body a Request can carry, empty
// and with every field set, with and without create, and for peer lists
// of every shape, marshalRequest gives proto.Marshal's bytes and
// writeRequest pbio's framing; a request with no body, or a body holding
// nil, goes through proto.Marshal, and a query that is not UTF-8 is
// refused as proto.Marshal refuses it.
func TestMarshalRequestIsMarshal(t *testing.T) {
	body := (&pb.Request{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
	if body == nil || body.Fields().Len() < 40 {
		t.Fatalf("pb.Request's oneof body not found, or too small (%v)", body)
	}
	var reqs []*pb.Request
	for i := range body.Fields().Len() {
		fd := body.Fields().Get(i)
		for _, full := range []bool{false, true} {
			for _, create := range []bool{false, true} {
				req := &pb.Request{Create: create}
				m := req.ProtoReflect()
				inner := m.NewField(fd)
				if full {
					fill(inner.Message())
				}
				m.Set(fd, inner)
				reqs = append(reqs, req)
			}
		}
	}
	reqs = append(reqs, &pb.Request{}, &pb.Request{Create: true}, &pb.Request{Body: &pb.Request_PeerList{}})
	// The peer lists ls asks for, encoded apart (marshalPeerListRequest).
	for _, q := range []string{"", "web", "tag:linux status:offline", "näme:wébé", strings.Repeat("x", 300)} {
		for _, limit := range []uint32{0, 1, 127, 128, 5000, 1<<32 - 1} {
			for _, view := range []pb.PeerListView{pb.PeerListView_PEER_LIST_VIEW_FULL, pb.PeerListView_PEER_LIST_VIEW_TABLE, 7, -1} {
				for _, deleted := range []bool{false, true} {
					reqs = append(reqs, &pb.Request{Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{
						Query: q, IncludeDeleted: deleted, Limit: limit, View: view}}})
				}
			}
		}
	}
	for _, req := range reqs {
		want, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%v: marshalRequest gives %x, proto.Marshal %x", req, got, want)
		}
		var framed, pbioFramed bytes.Buffer
		if err := writeRequest(&framed, req); err != nil {
			t.Fatal(err)
		}
		if err := pbio.NewDelimitedWriter(&pbioFramed).WriteMsg(req); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(framed.Bytes(), pbioFramed.Bytes()) {
			t.Fatalf("%v: writeRequest wrote %x, pbio %x", req, framed.Bytes(), pbioFramed.Bytes())
		}
	}
	bad := &pb.Request{Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{Query: "\xff"}}}
	if _, err := marshalRequest(bad); err == nil {
		t.Fatal("a query that is not UTF-8 was encoded; proto.Marshal refuses it")
	}
	if _, _, ok := requestBody(&pb.Request{Body: &pb.Request_PeerList{}}); ok {
		t.Fatal("a body holding nil was encoded by hand")
	}
	if n, _, ok := requestBody(&pb.Request{Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{}}}); !ok || n != 60 {
		t.Fatalf("peer_list: field %d (%v), want 60", n, ok)
	}
}

// fill sets every field of m that has one value only (no map of more than
// one entry, whose order proto.Marshal does not fix), one level deep.
func fill(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(scalar(fd.MapKey()).MapKey(), valueOf(mp.NewValue(), fd.MapValue()))
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(valueOf(l.NewElement(), fd))
		case fd.Message() != nil:
			m.Set(fd, m.NewField(fd)) // an empty message, present
		default:
			m.Set(fd, scalar(fd))
		}
	}
}

func valueOf(zero protoreflect.Value, fd protoreflect.FieldDescriptor) protoreflect.Value {
	if fd.Message() != nil {
		return zero
	}
	return scalar(fd)
}

// scalar is a value of fd's kind other than the default.
func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(-7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(-1 << 40)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(300)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1 << 40)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(2.5)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("web-01")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{1, 2, 3})
	}
	panic("kind " + fd.Kind().String())
}
