package results

import (
	"encoding/json"
	"os"
	"time"
)

// File is the name of the results file in a run's output directory.
const File = "results.json"

// Run is what results.json holds: one scenario run.
type Run struct {
	Scenario   string    `json:"scenario"`
	Lab        string    `json:"lab"`
	Started    time.Time `json:"started"`
	DurationMS float64   `json:"duration_ms"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	// Networks may be absent (older files); the report then draws the
	// topology from the hosts alone.
	Networks []Network `json:"networks,omitempty"`
	Hosts    []Host    `json:"hosts"`
	Steps    []Step    `json:"steps"`
	// Paths holds what each connect step measured (a grid's cells).
	Paths []Path `json:"paths,omitempty"`
	// Grid describes the grid a `sim grid` run was made from.
	Grid *Grid `json:"grid,omitempty"`
	// Classes aggregates a grid's paths by pair class, over every run
	// (Classes(Paths), written with them).
	Classes []Class `json:"classes,omitempty"`
	// Wakes holds each sleep of a host (a suspend step) and what woke it.
	Wakes []Wake `json:"wakes,omitempty"`
}

// Wake is one sleep of a host in the lab (a suspend step): its jumpmesh
// peer stopped and only the lab's wake listener on its interfaces, as the
// card of a sleeping machine. A magic packet for its MAC, with the right
// SecureOn password when one was set, wakes it: the peer starts again.
type Wake struct {
	Host      string    `json:"host"`
	Suspended time.Time `json:"suspended"`
	SecureOn  bool      `json:"secureon,omitempty"` // the card wanted a SecureOn password
	Woken     bool      `json:"woken"`
	// Command is the console step that asked for the wake (the last one
	// naming the host before the packet came), CommandAt when it started.
	Command   string     `json:"command,omitempty"`
	CommandAt *time.Time `json:"command_at,omitempty"`
	// PacketAt is when the magic packet that woke the host came off its
	// wire (the kernel's timestamp); ToPacketMS is the time from the
	// command's start to then: the console's process start, its call to the
	// coordinator, the order to the waker and the waker's send.
	PacketAt   *time.Time `json:"packet_at,omitempty"`
	ToPacketMS float64    `json:"to_packet_ms,omitempty"`
	// RequestToPacketMS is the time from the console's request (`wake
	// --json`'s requested_at, the same clock in the lab) to the packet: the
	// coordinator, the order to the waker and its send, without the
	// console's start. Issue #14's goal: ≤ 100 ms + 1 RTT.
	RequestToPacketMS float64 `json:"request_to_packet_ms,omitempty"`
	Packet            string  `json:"packet,omitempty"` // the packet that woke it
	Waker             string  `json:"waker,omitempty"`  // the host that sent it
	// Senders are the hosts whose magic packets for this host reached it
	// while it slept; Packets counts those packets, WrongPassword those
	// the card refused for their SecureOn password.
	Senders       []string `json:"senders,omitempty"`
	Packets       int      `json:"packets"`
	WrongPassword int      `json:"wrong_password,omitempty"`
	// Attempts are the console commands that asked to wake the host while
	// it slept (the last try of a step that tries again), each with the
	// magic packets for the host that reached it before the next command.
	Attempts []WakeAttempt `json:"attempts,omitempty"`
	// RestartMS is the time from the packet until the peer's init-script
	// had started it again.
	RestartMS float64 `json:"restart_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// WakeAttempt is one console command that asked to wake a sleeping host.
type WakeAttempt struct {
	Command string    `json:"command"`
	At      time.Time `json:"at"`
	// Packets counts the magic packets for the host that reached it (valid
	// or not); ToPacketMS is the time from the command's start to the
	// first of them (0: none came).
	Packets    int     `json:"packets"`
	ToPacketMS float64 `json:"to_packet_ms,omitempty"`
}

// Network describes a network of the run.
type Network struct {
	Name   string `json:"name"`
	NAT    string `json:"nat"`
	Subnet string `json:"subnet,omitempty"`
	Public string `json:"public_addr,omitempty"` // the NAT's public side
}

// Host describes a host of the run.
type Host struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	Role    string `json:"role"`
	Addr    string `json:"addr"`
	Public  string `json:"public_addr,omitempty"` // the NAT's public side
	Dir     string `json:"dir"`
	// Networks, for a host on several networks, are its interfaces in
	// order (Network and Addr are the first's).
	Networks []HostNIC `json:"networks,omitempty"`
	// NAT is what the host's peer last reported of its NAT (`jumpmesh
	// peer status`), read at the end of the run; nil for a host without a
	// peer or a peer that learnt nothing.
	NAT *HostNAT `json:"nat,omitempty"`
}

// HostNAT is a peer's account of its NAT: the mapping kinds natmap told
// (endpoint-independent, sequential, random, unknown; UDP also blocked)
// from what its coordinator and relays saw.
type HostNAT struct {
	TCP            string `json:"tcp"`
	UDP            string `json:"udp"`
	PortPreserving bool   `json:"port_preserving,omitempty"`
	NoNAT          bool   `json:"no_nat,omitempty"`
	PublicAddr     string `json:"public_addr,omitempty"`
	Observers      int    `json:"observers"`
	// Hairpinning is the peer's hairpin test: "yes", "no", or "" when not
	// tested (no UDP mapping seen, or no NAT).
	Hairpinning string `json:"hairpinning,omitempty"`
}

// HostNIC is one interface of a host on several networks.
type HostNIC struct {
	Network string `json:"network"`
	Addr    string `json:"addr"`
}

// Step is one step's outcome.
type Step struct {
	Index      int       `json:"index"`
	Name       string    `json:"name"`
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"duration_ms"`
	OK         bool      `json:"ok"`
	Skipped    bool      `json:"skipped,omitempty"`
	Error      string    `json:"error,omitempty"`
	Output     string    `json:"output,omitempty"`
}

// Duration is the step's duration.
func (s Step) Duration() time.Duration {
	return time.Duration(s.DurationMS * float64(time.Millisecond))
}

// Path is one connect step's measurement: how a console reached a peer,
// and whether hole punching made the path direct.
type Path struct {
	Run        int    `json:"run"` // repetition, from 1
	Console    string `json:"console"`
	Peer       string `json:"peer"`
	ConsoleNAT string `json:"console_nat"` // NAT preset of the console's network
	PeerNAT    string `json:"peer_nat"`
	OK         bool   `json:"ok"` // connected at all (directly or relayed)
	Error      string `json:"error,omitempty"`
	Initial    string `json:"initial,omitempty"`    // "direct", "relayed" or "jumpoint": the first connection
	Final      string `json:"final,omitempty"`      // "direct", "relayed" or "jumpoint": at the end of the wait
	FinalAddr  string `json:"final_addr,omitempty"` // the peer's address on the final path
	Transport  string `json:"transport,omitempty"`  // "tcp" or "quic" when the final path is direct
	// Jumpoint names the jumpoint carrying a final path "jumpoint".
	Jumpoint string `json:"jumpoint,omitempty"`
	// ConnectMS is the time to the first connection; TimeToDirectMS the
	// time from the relayed connection to the direct one (0: none).
	ConnectMS      float64 `json:"connect_ms"`
	TimeToDirectMS float64 `json:"time_to_direct_ms,omitempty"`
	// RTTMS is the median ping round trip on the final path; RelayRTTMS the
	// round trip through the relay that the lab's link latencies imply
	// (the basis of the time-to-direct target).
	RTTMS      float64 `json:"rtt_ms,omitempty"`
	RelayRTTMS float64 `json:"relay_rtt_ms,omitempty"`
	// ProbesSent counts the probes of the port-mapping probe exchange the
	// console reported (`ping --json`'s probes_sent; 0: none ran, or a
	// console that does not report it).
	ProbesSent int `json:"probes_sent,omitempty"`
	// PunchAttempt is the hole punch attempt, from 1, that made a path
	// that started relayed direct, as the peer's puncher logged it (0:
	// unknown, or not punched).
	PunchAttempt int `json:"punch_attempt,omitempty"`
}

// Grid describes a NAT grid run: every console preset against every peer
// preset, Runs times.
type Grid struct {
	Presets   []string `json:"presets"`
	Runs      int      `json:"runs"`
	LatencyMS float64  `json:"latency_ms"` // one-way, on each NAT's uplink
	WaitMS    float64  `json:"wait_ms"`    // how long a relayed pair may take to go direct
}

// Write writes r to path as the runner always has: indented by two
// spaces, with a final newline.
func (r *Run) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
