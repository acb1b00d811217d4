package control

import (
	"encoding/binary"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A console's command makes one call or two and exits, and its first
// proto.Marshal of a pb.Request set up protobuf's reflection and coders
// of all of Request's fields (a oneof of every request, 44 of them) to
// send one: 0.4 ms of CPU quiet, 0.9 ms under load (perf, `jumpmesh ls`),
// paid by every `ls` and `jump` (issues 16, 17). A Request is its body —
// one field, a message whose number the oneof wrapper's struct tag gives —
// and create (field 100, written first), so marshalRequest encodes the body alone with
// protobuf and writes the Request around it: the bytes proto.Marshal
// gives (TestMarshalRequestIsMarshal, every body). A request whose body
// is unset or not a message goes through proto.Marshal. Requests are
// the caller's own, made in this process: none carries unknown fields.

// requestCreate is pb.Request's create field (mesh/pb/control.proto).
const requestCreate = 100

// writeRequest writes req length-delimited as pbio's writer does, in one
// write.
func writeRequest(w io.Writer, req *pb.Request) error {
	raw, err := marshalRequest(req)
	if err != nil {
		return err
	}
	b := protowire.AppendVarint(make([]byte, 0, len(raw)+binary.MaxVarintLen64), uint64(len(raw)))
	_, err = w.Write(append(b, raw...))
	return err
}

// marshalRequest is proto.Marshal(req) (see above).
func marshalRequest(req *pb.Request) ([]byte, error) {
	num, body, ok := requestBody(req)
	if !ok {
		return proto.Marshal(req)
	}
	inner, ok := marshalPeerListRequest(body)
	if !ok {
		var err error
		if inner, err = proto.Marshal(body); err != nil {
			return nil, err
		}
	}
	b := make([]byte, 0, len(inner)+16)
	// protobuf writes fields outside a oneof first, then the oneof's.
	if req.GetCreate() {
		b = protowire.AppendTag(b, requestCreate, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, inner), nil
}

// requestBody is req's body message and its field number, read from the
// oneof wrapper (*pb.Request_PeerList{PeerList: ...}) and its struct tag
// ("bytes,60,opt,name=peer_list,...") without protobuf's reflection.
func requestBody(req *pb.Request) (protowire.Number, proto.Message, bool) {
	if req == nil || req.Body == nil {
		return 0, nil, false
	}
	v := reflect.ValueOf(req.Body)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() != 1 {
		return 0, nil, false
	}
	tag := strings.Split(v.Elem().Type().Field(0).Tag.Get("protobuf"), ",")
	if len(tag) < 2 || tag[0] != "bytes" {
		return 0, nil, false
	}
	num, err := strconv.Atoi(tag[1])
	if err != nil || !protowire.Number(num).IsValid() {
		return 0, nil, false
	}
	f := v.Elem().Field(0)
	if f.Kind() != reflect.Pointer || f.IsNil() {
		return 0, nil, false
	}
	body, ok := f.Interface().(proto.Message)
	if !ok {
		return 0, nil, false
	}
	return protowire.Number(num), body, true
}

// Field numbers of pb.PeerListRequest (mesh/pb/control.proto).
const (
	peerListQuery          = 1
	peerListIncludeDeleted = 2
	peerListLimit          = 3
	peerListView           = 4
)

// marshalPeerListRequest is proto.Marshal of body when body is the
// request `ls` makes, a PeerListRequest, without protobuf's set-up of its
// type at first use (0.1–0.2 ms quiet, 0.4 at load): its four scalar
// fields, in number order, those at their default left out. A query that
// is not UTF-8 is left to proto.Marshal, which refuses it.
func marshalPeerListRequest(body proto.Message) ([]byte, bool) {
	m, ok := body.(*pb.PeerListRequest)
	if !ok || !utf8.ValidString(m.GetQuery()) {
		return nil, false
	}
	b := make([]byte, 0, len(m.GetQuery())+24)
	if q := m.GetQuery(); q != "" {
		b = protowire.AppendTag(b, peerListQuery, protowire.BytesType)
		b = protowire.AppendString(b, q)
	}
	if m.GetIncludeDeleted() {
		b = protowire.AppendTag(b, peerListIncludeDeleted, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if n := m.GetLimit(); n != 0 {
		b = protowire.AppendTag(b, peerListLimit, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(n))
	}
	if v := m.GetView(); v != 0 {
		b = protowire.AppendTag(b, peerListView, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(v))) // an enum is an int32: negative ones take 10 bytes
	}
	return b, true
}
