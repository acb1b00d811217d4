package console

import (
	"bytes"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// `jumpmesh ls --json` writes its list here, straight from the decoded
// views (issue 16: `ls --json` at 100,000 stored peers, p99 ≤ 20 ms end to
// end). The CLI's peerView struct through encoding/json (reflection, then
// indenting) cost more than the list's decoding for a list of 1,000; this
// writer appends the same bytes to one buffer: what encoding/json's
// Encoder with SetIndent("", "  ") printed for the CLI's []peerView, byte
// for byte (cmd/jumpmesh's TestPeerListJSONIsEncodingJSON compares them on
// records with every field set, escapes, invalid UTF-8, empty fields and
// extreme numbers), but for a load that is not a number (NaN, ±Inf: a
// peer's own report), which encoding/json refused, failing the whole list,
// and which is null here.

// PeerListJSON appends to b the JSON array of views as `jumpmesh ls
// --json` prints it, and a newline. jumpoints, when not nil, gives the
// i-th view's jumpoints as printed (names); else they are the names the
// view carries, or the peer IDs.
func PeerListJSON(b []byte, views []*pb.PeerView, jumpoints func(i int) []string) []byte {
	if len(views) == 0 {
		return append(b, "[]\n"...)
	}
	b = append(b, "[\n"...)
	for i, v := range views {
		var jp []string
		if jumpoints != nil {
			jp = jumpoints(i)
		} else {
			jp = ViewJumpoints(v)
		}
		b = appendPeerJSON(b, v, jp)
		if i < len(views)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, "]\n"...)
}

// WritePeerListJSON writes PeerListJSON's bytes to w in one write.
func WritePeerListJSON(w io.Writer, views []*pb.PeerView, jumpoints func(i int) []string) error {
	buf := printBuffers.Get().(*[]byte)
	defer printBuffers.Put(buf)
	*buf = PeerListJSON((*buf)[:0], views, jumpoints)
	_, err := w.Write(*buf)
	return err
}

// printBuffers are the lists' output buffers, reused by a process that
// prints many (a list of 1,000 is 200–700 KB).
var printBuffers = sync.Pool{New: func() any { return new([]byte) }}

// ViewJumpoints is the jumpoints of a view's peer as a list names them:
// the name the view carries for each, else its peer ID.
func ViewJumpoints(v *pb.PeerView) []string {
	ids := v.GetPeer().GetJumpoints()
	if len(ids) == 0 {
		return nil
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		name := ""
		for _, r := range v.GetJumpoints() {
			if r.GetName() != "" && string(r.GetId()) == string(id) {
				name = r.GetName()
			}
		}
		if name == "" {
			name = string(appendPeerID(nil, id))
		}
		out = append(out, name)
	}
	return out
}

// jsonObject writes one object's members at an indent, with the commas
// between them.
type jsonObject struct {
	b      []byte
	indent string
	n      int
}

func (o *jsonObject) key(k string) {
	if o.n > 0 {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = append(o.b, '\n')
	o.b = append(o.b, o.indent...)
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, `": `...)
}

func (o *jsonObject) str(k, v string) {
	o.key(k)
	o.b = appendJSONString(o.b, v)
}

// strOmit is str but for an empty v (omitempty).
func (o *jsonObject) strOmit(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *jsonObject) uint(k string, v uint64) {
	o.key(k)
	o.b = strconv.AppendUint(o.b, v, 10)
}

func (o *jsonObject) bool(k string, v bool) {
	o.key(k)
	o.b = strconv.AppendBool(o.b, v)
}

// strings is a list that is never null ([] when empty).
func (o *jsonObject) strings(k string, vs []string) {
	o.key(k)
	if len(vs) == 0 {
		o.b = append(o.b, "[]"...)
		return
	}
	o.b = append(o.b, '[')
	for i, v := range vs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = append(o.b, '\n')
		o.b = append(o.b, o.indent...)
		o.b = append(o.b, "  "...)
		o.b = appendJSONString(o.b, v)
	}
	o.b = append(o.b, '\n')
	o.b = append(o.b, o.indent...)
	o.b = append(o.b, ']')
}

// end closes the object (opened by the caller with '{').
func (o *jsonObject) end() []byte {
	o.b = append(o.b, '\n')
	o.b = append(o.b, o.indent[:len(o.indent)-2]...)
	return append(o.b, '}')
}

const jsonIndent = "          " // deep enough for a NIC's addresses

// appendPeerJSON is one view as the CLI's peerView printed it, at the
// list's indent (its members at 4 spaces).
func appendPeerJSON(b []byte, v *pb.PeerView, jumpoints []string) []byte {
	p, s, i := v.GetPeer(), v.GetPeer().GetSettings(), v.GetPeer().GetInfo()
	b = append(b, "  {"...)
	o := jsonObject{b: b, indent: jsonIndent[:4]}
	o.key("id")
	o.b = append(o.b, '"')
	o.b = appendPeerID(o.b, p.GetId())
	o.b = append(o.b, '"')
	o.str("name", s.GetName())
	o.str("status", v.GetStatus())
	o.str("jump_group", s.GetGroup())
	o.strOmit("tag", s.GetTag())
	o.strOmit("comments", s.GetComments())
	o.strOmit("jump_policy", s.GetJumpPolicy())
	o.strOmit("session_policy_present", s.GetSessionPolicyPresent())
	o.strOmit("session_policy_not_present", s.GetSessionPolicyNotPresent())
	if m := s.GetMaxOfflineMinutes(); m != 0 {
		o.uint("max_offline_minutes", uint64(m))
	}
	o.str("connection", words.ConnectionTypeName(s.GetConnectionType()))
	o.strOmit("hostname", i.GetHostname())
	o.str("os", i.GetOs()+"/"+i.GetArch()) // never empty: omitempty never left it out
	o.strOmit("version", i.GetVersion())
	o.strings("private_ips", i.GetPrivateIps())
	o.strOmit("public_ip", p.GetPublicAddr())
	o.strOmit("gateway", i.GetGatewayIp())
	o.strOmit("gateway_mac", i.GetGatewayMac())
	if nics := i.GetNics(); len(nics) > 0 {
		o.key("nics")
		o.b = append(o.b, '[')
		for k, n := range nics {
			if k > 0 {
				o.b = append(o.b, ',')
			}
			o.b = append(o.b, "\n      {"...)
			no := jsonObject{b: o.b, indent: jsonIndent[:8]}
			no.str("name", n.GetName())
			no.str("mac", n.GetMac())
			no.strings("addrs", n.GetAddrs())
			if n.GetDefaultRoute() {
				no.bool("default_route", true)
			}
			o.b = no.end()
		}
		o.b = append(o.b, "\n    ]"...)
	}
	users := p.GetStats().GetConsoleUsers()
	if len(users) == 0 {
		users = i.GetConsoleUsers()
	}
	o.strings("console_users", users)
	o.strOmit("installer", p.GetInstallerId())
	o.timeOmit("installed", p.GetInstalledUnix())
	o.timeOmit("last_seen", p.GetLastSeenUnix())
	o.timeOmit("last_access", p.GetLastAccessUnix())
	if st := p.GetStats(); st != nil {
		o.key("stats")
		o.b = append(o.b, '{')
		so := jsonObject{b: o.b, indent: jsonIndent[:6]}
		so.key("load1")
		so.b = appendJSONFloat(so.b, st.GetLoad1())
		so.uint("cpus", uint64(st.GetCpus()))
		so.uint("disk_used_bytes", st.GetDiskUsedBytes())
		so.uint("disk_total_bytes", st.GetDiskTotalBytes())
		so.uint("uptime_seconds", st.GetUptimeSeconds())
		so.timeOmit("taken", st.GetTakenUnix())
		o.b = so.end()
		if r := st.GetNat(); r != nil {
			o.key("nat")
			o.b = append(o.b, '{')
			no := jsonObject{b: o.b, indent: jsonIndent[:6]}
			no.str("tcp", r.GetTcp())
			no.str("udp", r.GetUdp())
			no.bool("port_preserving", r.GetPortPreserving())
			if r.GetNoNat() {
				no.bool("no_nat", true)
			}
			no.strOmit("public_addr", r.GetPublicAddr())
			no.uint("observers", uint64(r.GetObservers()))
			switch r.GetHairpinning() {
			case pb.Hairpinning_HAIRPINNING_YES:
				no.str("hairpinning", "yes")
			case pb.Hairpinning_HAIRPINNING_NO:
				no.str("hairpinning", "no")
			}
			no.timeOmit("updated", r.GetUpdatedUnix())
			o.b = no.end()
		}
	}
	if len(jumpoints) > 0 {
		o.strings("jumpoints", jumpoints)
	}
	return o.end()
}

// timeOmit is a stored Unix time as RFC 3339 in UTC, left out when 0.
func (o *jsonObject) timeOmit(k string, sec int64) {
	if sec == 0 {
		return
	}
	o.key(k)
	o.b = append(o.b, '"')
	o.b = time.Unix(sec, 0).UTC().AppendFormat(o.b, time.RFC3339)
	o.b = append(o.b, '"')
}

// appendJSONFloat is encoding/json's float64: the shortest decimal, in
// exponent form below 1e-6 or from 1e21, with a one-digit negative
// exponent unpadded; null for what JSON cannot hold.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c]: ASCII byte c is written as it is (encoding/json with HTML
// escaping, its Encoder's default: not <, > or &).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString is encoding/json's string, HTML-escaped: invalid
// UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// WritePeerTable writes views as `jumpmesh ls` prints its table: a
// header, a row each (name, status, jump group, tag, first private IP,
// public address, console users, last contact, shortened ID, and the
// jumpoints when a view has some: jumpoints(i) as for PeerListJSON)
// aligned by text/tabwriter, then how many.
func WritePeerTable(w io.Writer, views []*pb.PeerView, jumpoints func(i int) []string) error {
	behind := false
	for _, v := range views {
		behind = behind || len(v.GetPeer().GetJumpoints()) > 0
	}
	rows, aligned := printBuffers.Get().(*[]byte), printBuffers.Get().(*[]byte)
	defer printBuffers.Put(rows)
	defer printBuffers.Put(aligned)
	// Room for the rows at once (~150 bytes each): a process that prints
	// one list (ls) grew it by doubling, copying and faulting each size in.
	b := slices.Grow((*rows)[:0], 160*(len(views)+1))
	b = append(b, "NAME\tSTATUS\tJUMP GROUP\tTAG\tPRIVATE IP\tPUBLIC IP\tCONSOLE USER\tLAST SEEN\tID"...)
	if behind {
		b = append(b, "\tJUMPOINT"...)
	}
	b = append(b, '\n')
	for i, v := range views {
		p, s := v.GetPeer(), v.GetPeer().GetSettings()
		users := p.GetStats().GetConsoleUsers()
		if len(users) == 0 {
			users = p.GetInfo().GetConsoleUsers()
		}
		ip := ""
		if ips := p.GetInfo().GetPrivateIps(); len(ips) > 0 {
			ip = ips[0]
		}
		b = append(b, s.GetName()...)
		b = append(b, '\t')
		b = append(b, v.GetStatus()...)
		b = append(b, '\t')
		b = append(b, s.GetGroup()...)
		b = append(b, '\t')
		b = appendOrDash(b, s.GetTag())
		b = append(b, '\t')
		b = appendOrDash(b, ip)
		b = append(b, '\t')
		b = appendOrDash(b, p.GetPublicAddr())
		b = append(b, '\t')
		b = appendJoined(b, users, ",")
		b = append(b, '\t')
		switch {
		case v.GetStatus() == "online" || v.GetStatus() == "disabled":
			b = append(b, "now"...)
		case p.GetLastSeenUnix() == 0:
			b = append(b, "never"...)
		default:
			b = time.Unix(p.GetLastSeenUnix(), 0).UTC().AppendFormat(b, "2006-01-02 15:04 UTC")
		}
		b = append(b, '\t')
		n := len(b)
		b = appendPeerID(b, p.GetId())
		if len(b)-n > 16 { // ShortID in place
			var tail [6]byte
			copy(tail[:], b[len(b)-6:])
			b = append(append(b[:n+8], "…"...), tail[:]...)
		}
		if behind {
			var jp []string
			if jumpoints != nil {
				jp = jumpoints(i)
			} else {
				jp = ViewJumpoints(v)
			}
			b = append(b, '\t')
			b = appendJoined(b, jp, ",")
		}
		b = append(b, '\n')
	}
	*rows = b
	out, ok := alignColumns((*aligned)[:0], b)
	if !ok { // a cell holds what text/tabwriter reads as layout
		var buf bytes.Buffer
		tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
		_, _ = tw.Write(b)
		_ = tw.Flush()
		out = buf.Bytes()
	}
	out = strconv.AppendInt(out, int64(len(views)), 10)
	out = append(out, " peer(s)\n"...)
	if ok {
		*aligned = out
	}
	_, err := w.Write(out)
	return err
}

// alignColumns appends rows (lines of cells separated by tabs, each line
// ending in a newline, every line with as many cells) aligned as
// text/tabwriter with padding 2 and spaces aligns them: each cell but a
// line's last padded to its column's widest (in runes) plus two. It
// reports false, having appended nothing, when a cell holds a byte
// tabwriter reads as layout (\v, \f, \r, its escape \xff) or the lines
// differ in cells: the caller then asks tabwriter itself (1,000 rows took it
// 1.5–2 ms; this, a tenth of that).
func alignColumns(out, rows []byte) ([]byte, bool) {
	var widths [16]int
	cols := -1
	for rest := rows; len(rest) > 0; {
		end := bytes.IndexByte(rest, '\n')
		if end < 0 {
			return out, false
		}
		line := rest[:end]
		rest = rest[end+1:]
		if bytes.ContainsAny(line, "\v\f\r") || bytes.IndexByte(line, tabwriter.Escape) >= 0 {
			return out, false
		}
		n := bytes.Count(line, []byte{'\t'})
		if cols < 0 {
			cols = n
		}
		if n != cols || n > len(widths) {
			return out, false
		}
		for j := 0; j < n; j++ {
			tab := bytes.IndexByte(line, '\t')
			widths[j] = max(widths[j], utf8.RuneCount(line[:tab]))
			line = line[tab+1:]
		}
	}
	// The aligned rows take at most the rows and every line's padding.
	pad := 0
	for j := 0; j < cols; j++ {
		pad += widths[j] + 2
	}
	out = slices.Grow(out, len(rows)+bytes.Count(rows, []byte{'\n'})*pad)
	for rest := rows; len(rest) > 0; {
		end := bytes.IndexByte(rest, '\n')
		line := rest[:end]
		rest = rest[end+1:]
		for j := 0; j < cols; j++ {
			tab := bytes.IndexByte(line, '\t')
			out = append(out, line[:tab]...)
			for range widths[j] + 2 - utf8.RuneCount(line[:tab]) {
				out = append(out, ' ')
			}
			line = line[tab+1:]
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out, true
}

// ShortID keeps a peer ID recognisable in a table; show and --json print
// it whole.
func ShortID(id string) string {
	if len(id) > 16 {
		return id[:8] + "…" + id[len(id)-6:]
	}
	return id
}

func appendOrDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

// appendJoined is strings.Join(ss, sep), or "-" when that is empty.
func appendJoined(b []byte, ss []string, sep string) []byte {
	n := len(b)
	for i, s := range ss {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, s...)
	}
	if len(b) == n {
		b = append(b, '-')
	}
	return b
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// appendPeerID appends id as peer.ID's String prints it (base58, as
// github.com/mr-tron/base58 encodes it: a '1' per leading zero byte),
// dividing 32-bit limbs by 58^5 at a time: that encoder's byte-by-byte
// long division was the largest part of printing 1,000 views (about 2 µs
// an ID).
func appendPeerID(b []byte, id []byte) []byte {
	zeros := 0
	for zeros < len(id) && id[zeros] == 0 {
		zeros++
	}
	for range zeros {
		b = append(b, '1')
	}
	rest := id[zeros:]
	if len(rest) == 0 {
		return b
	}
	// rest as big-endian 32-bit limbs, the first holding len%4 bytes.
	var small [16]uint32
	limbs := small[:0]
	if n := (len(rest) + 3) / 4; n > len(small) {
		limbs = make([]uint32, 0, n)
	}
	if head := len(rest) % 4; head > 0 {
		var v uint32
		for _, c := range rest[:head] {
			v = v<<8 | uint32(c)
		}
		limbs = append(limbs, v)
		rest = rest[head:]
	}
	for ; len(rest) > 0; rest = rest[4:] {
		limbs = append(limbs, uint32(rest[0])<<24|uint32(rest[1])<<16|uint32(rest[2])<<8|uint32(rest[3]))
	}
	const chunk = 58 * 58 * 58 * 58 * 58 // 656,356,768 < 2^30
	var digits [160]byte                 // base 58, least significant first
	nd := 0
	for len(limbs) > 0 {
		var rem uint64
		for i, l := range limbs {
			cur := rem<<32 | uint64(l)
			limbs[i] = uint32(cur / chunk)
			rem = cur % chunk
		}
		for len(limbs) > 0 && limbs[0] == 0 {
			limbs = limbs[1:]
		}
		for k := 0; k < 5; k++ {
			if nd == len(digits) {
				return append(b[:len(b)-zeros], peer.ID(id).String()...) // longer than any ID: the library's
			}
			digits[nd] = byte(rem % 58)
			rem /= 58
			nd++
		}
	}
	for nd > 0 && digits[nd-1] == 0 { // the last chunk's leading zeros
		nd--
	}
	for i := nd - 1; i >= 0; i-- {
		b = append(b, base58Alphabet[digits[i]])
	}
	return b
}
