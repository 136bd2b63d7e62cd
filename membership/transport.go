package membership

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// transport is memberlist's transport for vigil: UDP and TCP on one
// address and port, as memberlist's NetTransport, with vigil's
// point-to-point datagrams (direct.go) taken out of the packet stream on
// the reading goroutine, before memberlist sees them. memberlist's own
// packets start with a message type (< 16), an encryption version (0 or 1)
// or its label marker (244), so the two never mix, and operators open no
// new port.
//
// Unlike NetTransport it reads every datagram into one reused buffer and
// hands memberlist a copy of the datagram's size, not a fresh 64 KiB
// buffer per datagram: with vigil's pings, that buffer was 90 % of all the
// agent allocated, and most of its garbage collection. vigil's own frames
// are handled from the buffer itself (onFrame keeps nothing of it).
type transport struct {
	bindAddr string
	tcp      *net.TCPListener
	udp      *net.UDPConn
	logger   *log.Logger
	onFrame  func(*memberlist.Packet)

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	closing  chan struct{} // closed by Shutdown: nothing more is handed over
	down     atomic.Bool
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

const (
	// maxDatagram is the largest datagram read whole.
	maxDatagram = 65536
	// udpRecvBuf is the socket receive buffer asked for, as memberlist's.
	udpRecvBuf = 2 * 1024 * 1024
)

// listen binds TCP and UDP on ip:port (port 0: one the kernel picks for
// both). It reads nothing until start.
func listen(bindAddr string, port int, logger *log.Logger) (*transport, error) {
	ip := net.ParseIP(bindAddr)
	if ip == nil {
		return nil, fmt.Errorf("bind address %q is not an IP address", bindAddr)
	}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, fmt.Errorf("failed to start TCP listener on %q port %d: %v", bindAddr, port, err)
	}
	if port == 0 {
		port = tcp.Addr().(*net.TCPAddr).Port
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("failed to start UDP listener on %q port %d: %v", bindAddr, port, err)
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	return &transport{
		bindAddr: bindAddr, tcp: tcp, udp: udp, logger: logger,
		packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn),
		closing: make(chan struct{}),
	}, nil
}

// start begins reading; vigil's frames go to onFrame.
func (t *transport) start(onFrame func(*memberlist.Packet)) {
	t.onFrame = onFrame
	t.wg.Add(2)
	go t.acceptTCP()
	go t.readUDP()
}

// port is the bound port.
func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is memberlist's rule: the given address, else a
// private address of this machine when bound to every address, else the
// bound one.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
		}
		if ip4 := addr.To4(); ip4 != nil {
			addr = ip4
		}
		return addr, port, nil
	}
	if t.bindAddr == "0.0.0.0" {
		priv, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("failed to get interface addresses: %v", err)
		}
		if priv == "" {
			return nil, 0, fmt.Errorf("no private IP address found, and explicit IP not provided")
		}
		addr := net.ParseIP(priv)
		if addr == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address: %q", priv)
		}
		return addr, t.port(), nil
	}
	return t.tcp.Addr().(*net.TCPAddr).IP, t.port(), nil
}

// WriteTo sends one datagram. An "IP:PORT" address is parsed without a
// resolver or an allocation; anything else is resolved.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	var err error
	if ap, perr := netip.ParseAddrPort(addr); perr == nil {
		_, err = t.udp.WriteToUDPAddrPort(b, ap)
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", addr); err == nil {
			_, err = t.udp.WriteTo(b, ua)
		}
	}
	return time.Now(), err
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", addr)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the sockets and waits for the readers. A reader blocked
// handing something to memberlist gives up once closing is closed.
func (t *transport) Shutdown() error {
	if t.down.Swap(true) {
		t.wg.Wait()
		return nil
	}
	close(t.closing)
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

// acceptTCP hands memberlist its stream connections (push-pull, joins),
// backing off on accept errors as NetTransport does.
func (t *transport) acceptTCP() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.down.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.streamCh <- conn:
		case <-t.closing:
			_ = conn.Close()
			return
		}
	}
}

// readUDP reads datagrams: vigil's frames are handled here, memberlist's
// are copied out and handed over.
func (t *transport) readUDP() {
	defer t.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.down.Load() {
				return
			}
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		}
		if n < 1 {
			continue
		}
		addr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		if buf[0] == directMagic {
			t.onFrame(&memberlist.Packet{Buf: buf[:n], From: addr, Timestamp: ts})
			continue
		}
		gometrics.IncrCounter([]string{"memberlist", "udp", "received"}, float32(n))
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: addr, Timestamp: ts}
		select {
		case t.packetCh <- p:
		case <-t.closing:
			return
		}
	}
}
