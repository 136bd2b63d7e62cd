package membership

import (
	"bytes"
	"io"
	"log"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// The transport hands memberlist its datagrams, each in a buffer of its
// own (the read buffer is reused), takes vigil's frames out of the
// stream, and carries memberlist's streams.
func TestTransportSplitsFramesFromMemberlistPackets(t *testing.T) {
	tr, err := listen("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 4)
	tr.start(func(p *memberlist.Packet) { frames <- append([]byte(nil), p.Buf...) })
	defer tr.Shutdown()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port()))
	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != tr.port() {
		t.Fatalf("advertise %v %d %v", ip, port, err)
	}

	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, second := []byte{1, 'a', 'b', 'c'}, []byte{2, 'x'}
	ours := []byte{directMagic, 0, 'v'}
	for _, b := range [][]byte{first, ours, second} {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	for len(got) < 2 {
		select {
		case p := <-tr.PacketCh():
			got = append(got, p.Buf)
			if p.From == nil || p.Timestamp.IsZero() {
				t.Errorf("packet without source or time: %+v", p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("memberlist got %d of 2 packets", len(got))
		}
	}
	if !bytes.Equal(got[0], first) || !bytes.Equal(got[1], second) {
		t.Errorf("memberlist got %q, want %q and %q (a reused buffer would show the second twice)", got, first, second)
	}
	select {
	case f := <-frames:
		if !bytes.Equal(f, ours) {
			t.Errorf("frame %q, want %q", f, ours)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("vigil's frame did not come out")
	}

	// Streams: a dial reaches StreamCh.
	go func() {
		if conn, err := tr.DialTimeout(addr, time.Second); err == nil {
			conn.Close()
		}
	}()
	select {
	case conn := <-tr.StreamCh():
		conn.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no stream")
	}

	// Writes to IP:PORT and to a host name both go out.
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lport := strconv.Itoa(ln.LocalAddr().(*net.UDPAddr).Port)
	for _, to := range []string{"127.0.0.1:" + lport, "localhost:" + lport} {
		if _, err := tr.WriteTo([]byte("hi"), to); err != nil {
			t.Fatalf("write to %s: %v", to, err)
		}
		buf := make([]byte, 16)
		_ = ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := ln.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("read after write to %s: %q %v", to, buf[:n], err)
		}
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil { // twice is fine
		t.Fatal(err)
	}
}

func TestTransportRefusesABusyPort(t *testing.T) {
	tr, err := listen("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	if _, err := listen("127.0.0.1", tr.port(), log.New(io.Discard, "", 0)); err == nil {
		t.Fatal("a second transport bound the same port")
	}
	if _, err := listen("not-an-ip", 0, log.New(io.Discard, "", 0)); err == nil {
		t.Fatal("a host name was taken as a bind address")
	}
}
