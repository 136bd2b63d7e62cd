package membership

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Consensus messages travel point to point, on the gossip port itself:
// vigil's transport (transport.go) takes the datagrams that start with
// directMagic and hands every other one to memberlist.
//
// A datagram is
//
//	directMagic | flags | body          (flags&flagSealed == 0)
//	directMagic | flags | nonce | AES-GCM(body), the first two bytes as
//	                                    additional data (flagSealed)
//
// and a body is
//
//	kind | seq (8 bytes) | len(from) | from | payload
//
// With a gossip keyring every datagram is sealed with its primary key and
// opened with any of its keys, as memberlist does; unsealed datagrams are
// then dropped, and sealed ones are dropped by an agent without a key.
// Every message is acknowledged by an ack frame of the same seq; the
// sender repeats a message every retry until it is acknowledged or
// its timeout passes (Resend). Consensus messages are idempotent.
//
// The prober's pings are frames too: a ping (empty payload) is answered at
// once, on the transport's goroutine, by a pong of the same seq carrying
// this node's view epoch (8 bytes), whether it vouches for the pinger's
// membership (1 byte: see Mesh.SetVouching), and the 3-byte load (see
// Load). A ping is never sent again: a lost one is a miss, which is the
// prober's evidence.
const (
	directMagic = 0xF6
	flagSealed  = 1

	kindMsg  = 1
	kindAck  = 2
	kindPing = 3
	kindPong = 4

	// directRetry is how long a message waits for its ack before it is
	// sent again, and directTimeout how long it is sent at all.
	directRetry   = 200 * time.Millisecond
	directTimeout = 1500 * time.Millisecond

	// maxOutstanding bounds the messages waiting for an ack, and
	// maxInbound those waiting for the agent: beyond them, the oldest
	// outstanding message is given up and new arrivals are dropped.
	maxOutstanding = 512
	maxInbound     = 4096
	// dedupWindow is how many recent seqs per sender are remembered, so
	// a message repeated because its ack was lost is delivered once.
	dedupWindow = 64
)

// DirectStats counts the point-to-point traffic, for `vigil info`.
type DirectStats struct {
	Sent      uint64 `json:"sent"`      // messages sent (not counting resends)
	Resent    uint64 `json:"resent"`    // resends of unacknowledged messages
	Acked     uint64 `json:"acked"`     // messages the addressee acknowledged
	GivenUp   uint64 `json:"given_up"`  // messages never acknowledged in time
	Received  uint64 `json:"received"`  // messages delivered to the agent
	Duplicate uint64 `json:"duplicate"` // repeats received and dropped
	Dropped   uint64 `json:"dropped"`   // malformed, unauthenticated, or over the queue's bound
	Pings     uint64 `json:"pings"`     // the prober's pings sent
	Pongs     uint64 `json:"pongs"`     // pong frames received (late and unmatched ones too)
	Answered  uint64 `json:"answered"`  // peers' pings answered
}

type outstanding struct {
	to, addr    string
	frame       []byte
	first, last time.Time
}

// direct is the point-to-point messenger. Its methods are safe for
// concurrent use: frames arrive on the transport's goroutine.
type direct struct {
	self    string
	write   func(frame []byte, addr string) // the transport's WriteTo
	keyring *memberlist.Keyring             // nil without encryption
	addrOf  func(name string) (string, bool)
	deliver func(Inbound) bool

	// mu guards the fields below.
	mu    sync.Mutex
	seq   uint64
	out   map[uint64]*outstanding
	order []uint64 // seqs in out, oldest first (may hold acked ones)
	seen  map[string]*recent
	stats DirectStats
	// aeads caches a cipher per key, so a frame costs no key schedule.
	aeads map[string]cipher.AEAD

	// loads gives this node's load to its pongs and keeps the peers';
	// onPong takes a pong.
	loads  *loads
	onPong func(Pong)
	// vouching is what pongs say about the pinger (SetVouching).
	vouching atomic.Pointer[vouching]
}

// vouching is this node's view epoch and the members its pongs vouch for.
type vouching struct {
	epoch   uint64
	members map[string]bool
}

// pongHeader is the epoch and vouch flag before a pong's load.
const pongHeader = 9

// pongPayload is the payload of the pong that answers from's ping.
func (d *direct) pongPayload(from string) []byte {
	var load []byte
	if d.loads != nil {
		load = d.loads.AckPayload()
	}
	b := make([]byte, pongHeader, pongHeader+len(load))
	if v := d.vouching.Load(); v != nil {
		binary.BigEndian.PutUint64(b, v.epoch)
		if v.members[from] {
			b[8] = 1
		}
	}
	return append(b, load...)
}

// Pong is the answer to a ping sent with Mesh.SendPing. At is when its
// datagram was read from the socket; Epoch is the answering node's view
// epoch, and Vouched whether it vouches for this node's membership.
type Pong struct {
	Seq     uint64
	From    string
	At      time.Time
	Epoch   uint64
	Vouched bool
}

type recent struct {
	seqs [dedupWindow]uint64
	next int
}

func (r *recent) has(s uint64) bool {
	for _, x := range r.seqs {
		if x == s {
			return true
		}
	}
	return false
}

func (r *recent) add(s uint64) {
	r.seqs[r.next] = s
	r.next = (r.next + 1) % dedupWindow
}

func newDirect(self string, keyring *memberlist.Keyring) *direct {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &direct{
		self:    self,
		keyring: keyring,
		// A random start: a restarted agent's seqs do not repeat the ones
		// its peers remember from its last run.
		seq:   binary.BigEndian.Uint64(b[:]) >> 1,
		out:   map[uint64]*outstanding{},
		seen:  map[string]*recent{},
		aeads: map[string]cipher.AEAD{},
	}
}

// ping sends one ping frame to the gossip address addr and returns its
// seq. It is not kept: a lost ping is not sent again.
func (d *direct) ping(addr string) (uint64, error) {
	seq := d.nextSeq()
	return seq, d.pingSeq(seq, addr)
}

// pingSeq sends the ping frame numbered seq (from nextSeq) to addr: a
// caller that must be ready for the pong takes the seq first.
func (d *direct) pingSeq(seq uint64, addr string) error {
	frame, err := d.frame(kindPing, seq, nil)
	if err != nil {
		return err
	}
	d.count(&d.stats.Pings)
	d.write(frame, addr)
	return nil
}

// send delivers payload to the node named to, and keeps it for Resend
// until the node acknowledges it.
func (d *direct) send(to string, payload []byte, now time.Time) error {
	if len(payload) > MaxMessage {
		return fmt.Errorf("membership: consensus message of %d bytes exceeds %d", len(payload), MaxMessage)
	}
	addr, ok := d.addrOf(to)
	if !ok {
		return fmt.Errorf("send to %s: no address known", to)
	}
	seq := d.nextSeq()
	frame, err := d.frame(kindMsg, seq, payload)
	if err != nil {
		return err
	}
	d.mu.Lock()
	for len(d.out) >= maxOutstanding && len(d.order) > 0 {
		old := d.order[0]
		d.order = d.order[1:]
		if _, ok := d.out[old]; ok {
			delete(d.out, old)
			d.stats.GivenUp++
		}
	}
	d.out[seq] = &outstanding{to: to, addr: addr, frame: frame, first: now, last: now}
	d.order = append(d.order, seq)
	d.stats.Sent++
	d.mu.Unlock()
	d.write(frame, addr)
	return nil
}

// resend sends again every message whose ack is overdue, and gives up
// those older than directTimeout.
func (d *direct) resend(now time.Time) {
	type w struct {
		addr  string
		frame []byte
	}
	var writes []w
	d.mu.Lock()
	keep := d.order[:0]
	for _, s := range d.order {
		o, ok := d.out[s]
		if !ok {
			continue
		}
		if now.Sub(o.first) >= directTimeout {
			delete(d.out, s)
			d.stats.GivenUp++
			continue
		}
		keep = append(keep, s)
		if now.Sub(o.last) >= directRetry {
			o.last = now
			d.stats.Resent++
			writes = append(writes, w{o.addr, o.frame})
		}
	}
	d.order = keep
	d.mu.Unlock()
	for _, x := range writes {
		d.write(x.frame, x.addr)
	}
}

// counts is a copy of the counters.
func (d *direct) counts() DirectStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// pending is how many messages wait for an ack.
func (d *direct) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.out)
}

// onFrame takes one of vigil's datagrams: an ack ends a message's
// resends; a message is acknowledged to its source address and delivered
// once.
func (d *direct) onFrame(p *memberlist.Packet) {
	kind, seq, from, payload, err := d.open(p.Buf)
	if err != nil {
		d.count(&d.stats.Dropped)
		return
	}
	switch kind {
	case kindPing:
		if len(payload) != 0 {
			d.count(&d.stats.Dropped)
			return
		}
		pong, err := d.frame(kindPong, seq, d.pongPayload(from))
		if err != nil {
			return
		}
		d.count(&d.stats.Answered)
		d.write(pong, p.From.String())
	case kindPong:
		if len(payload) < pongHeader || payload[8] > 1 {
			d.count(&d.stats.Dropped)
			return
		}
		d.count(&d.stats.Pongs)
		if ld, ok := decodeLoad(payload[pongHeader:]); ok && d.loads != nil {
			d.loads.set(from, ld)
		}
		if d.onPong != nil {
			d.onPong(Pong{Seq: seq, From: from, At: p.Timestamp,
				Epoch: binary.BigEndian.Uint64(payload), Vouched: payload[8] == 1})
		}
	case kindAck:
		d.mu.Lock()
		if o, ok := d.out[seq]; ok && o.to == from {
			delete(d.out, seq)
			d.stats.Acked++
		}
		d.mu.Unlock()
	case kindMsg:
		// Acknowledged once queued (or already seen): a message the full
		// queue dropped is not acknowledged, so its sender sends it again.
		d.mu.Lock()
		r := d.seen[from]
		if r == nil {
			r = &recent{}
			d.seen[from] = r
		}
		dup := r.has(seq)
		if dup {
			d.stats.Duplicate++
		}
		d.mu.Unlock()
		if !dup {
			if !d.deliver(Inbound{Query: ConsensusQuery, From: from, Payload: payload}) {
				d.count(&d.stats.Dropped)
				return
			}
			d.mu.Lock()
			r.add(seq)
			d.stats.Received++
			d.mu.Unlock()
		}
		if ack, err := d.frame(kindAck, seq, nil); err == nil {
			d.write(ack, p.From.String())
		}
	}
}

// nextSeq is the seq of the next frame sent.
func (d *direct) nextSeq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	return d.seq
}

// count adds one to a counter of d.stats.
func (d *direct) count(c *uint64) {
	d.mu.Lock()
	*c++
	d.mu.Unlock()
}

// aead is the cipher of key, made once.
func (d *direct) aead(key []byte) (cipher.AEAD, error) {
	d.mu.Lock()
	a, ok := d.aeads[string(key)]
	d.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := gcm(key)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if len(d.aeads) >= 16 { // keys rotated away: start over
		clear(d.aeads)
	}
	d.aeads[string(key)] = a
	d.mu.Unlock()
	return a, nil
}

// frame builds a datagram, sealed when a keyring is set.
func (d *direct) frame(kind byte, seq uint64, payload []byte) ([]byte, error) {
	if len(d.self) > 255 {
		return nil, fmt.Errorf("membership: node name of %d bytes is too long for a consensus frame", len(d.self))
	}
	body := make([]byte, 0, 10+len(d.self)+len(payload))
	body = append(body, kind)
	body = binary.BigEndian.AppendUint64(body, seq)
	body = append(body, byte(len(d.self)))
	body = append(body, d.self...)
	body = append(body, payload...)
	if d.keyring == nil {
		return append([]byte{directMagic, 0}, body...), nil
	}
	aead, err := d.aead(d.keyring.GetPrimaryKey())
	if err != nil {
		return nil, err
	}
	head := []byte{directMagic, flagSealed}
	out := make([]byte, 0, len(head)+aead.NonceSize()+len(body)+aead.Overhead())
	out = append(out, head...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, body, head), nil
}

var errFrame = errors.New("membership: malformed or unauthenticated consensus frame")

// open checks and parses a datagram.
func (d *direct) open(b []byte) (kind byte, seq uint64, from string, payload []byte, err error) {
	if len(b) < 2 || b[0] != directMagic {
		return 0, 0, "", nil, errFrame
	}
	sealed := b[1]&flagSealed != 0
	if b[1]&^flagSealed != 0 || sealed != (d.keyring != nil) {
		return 0, 0, "", nil, errFrame
	}
	body := b[2:]
	if sealed {
		head := b[:2]
		var opened []byte
		for _, k := range d.keyring.GetKeys() {
			aead, err := d.aead(k)
			if err != nil || len(body) < aead.NonceSize()+aead.Overhead() {
				continue
			}
			n := aead.NonceSize()
			if pt, err := aead.Open(nil, body[:n], body[n:], head); err == nil {
				opened = pt
				break
			}
		}
		if opened == nil {
			return 0, 0, "", nil, errFrame
		}
		body = opened
	}
	if len(body) < 10 {
		return 0, 0, "", nil, errFrame
	}
	kind = body[0]
	seq = binary.BigEndian.Uint64(body[1:9])
	n := int(body[9])
	if len(body) < 10+n || n == 0 || kind < kindMsg || kind > kindPong {
		return 0, 0, "", nil, errFrame
	}
	from = string(body[10 : 10+n])
	payload = append([]byte(nil), body[10+n:]...)
	if len(payload) > MaxMessage {
		return 0, 0, "", nil, errFrame
	}
	return kind, seq, from, payload, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// addrBook maps member names to their gossip addresses, kept from serf's
// member events.
type addrBook struct {
	mu sync.Mutex
	m  map[string]string
}

func (b *addrBook) set(name string, ip net.IP, port uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]string{}
	}
	b.m[name] = net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

func (b *addrBook) forget(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, name)
}

func (b *addrBook) get(name string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.m[name]
	return a, ok
}
