package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for ip and its key, PEM, and returns
// their paths; the certificate is its own CA.
func selfSigned(t *testing.T, ip string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

// --http-token guards the calls that change something; --http-tls-cert
// and --http-tls-key serve the API over HTTPS.
func TestHTTPTokenAndTLS(t *testing.T) {
	c := newCluster(t)
	cert, key := selfSigned(t, c.ip(1))
	n := c.add(1, "--http-token", "t0ken", "--http-tls-cert", cert, "--http-tls-key", key)
	if err := n.startNoWait(); err != nil {
		t.Fatal(err)
	}
	addr := "https://" + n.ip + ":7947"
	cli := func(args ...string) (string, error) {
		full := append([]string{args[0], "--http-addr", addr, "--http-ca-cert", cert}, args[1:]...)
		return runVigil(full...)
	}
	waitFor(t, 30*time.Second, "the agent answers over HTTPS", func() error {
		select {
		case <-n.exited:
			return fatalErr{fmt.Errorf("exited: %s", n.logTail())}
		default:
		}
		_, err := cli("info")
		return err
	})
	// Reads need no token.
	if out, err := cli("members"); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("members over HTTPS: %v\n%s", err, out)
	}
	// Plain HTTP, and HTTPS with a CA that did not sign the certificate,
	// are refused.
	if _, err := runVigil("info", "--http-addr", n.ip+":7947"); err == nil {
		t.Fatal("plain HTTP was answered")
	}
	other, _ := selfSigned(t, c.ip(1))
	if _, err := runVigil("info", "--http-addr", addr, "--http-ca-cert", other); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate of another CA: %v", err)
	}
	// Mutating calls and the log stream need the token.
	for _, args := range [][]string{{"event", "deploy"}, {"tags", "--set", "a=b"}, {"monitor"}} {
		if _, err := cli(args...); err == nil || !strings.Contains(err.Error(), "--http-token") {
			t.Fatalf("%v without the token: %v", args, err)
		}
		if _, err := cli(append([]string{args[0], "--http-token", "wrong"}, args[1:]...)...); err == nil || !strings.Contains(err.Error(), "--http-token") {
			t.Fatalf("%v with a wrong token: %v", args, err)
		}
	}
	if _, err := cli("event", "--http-token", "t0ken", "deploy"); err != nil {
		t.Fatalf("event with the token: %v", err)
	}
	t.Setenv("VIGIL_HTTP_TOKEN", "t0ken")
	if out, err := cli("tags", "--set", "a=b"); err != nil || !strings.Contains(out, "a=b") {
		t.Fatalf("tags with the token from the environment: %v\n%s", err, out)
	}
}
