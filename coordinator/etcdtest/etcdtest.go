// Package etcdtest runs a real etcd member in-process for tests: etcd's own
// server (go.etcd.io/etcd/server/v3/embed) on loopback ports, its data in a
// test's temporary directory, optionally serving TLS with a CA made for the
// test. Only tests import it.
package etcdtest

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
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Options choose how the member serves.
type Options struct {
	// TLS serves clients over TLS with a certificate of a CA made for the
	// test (Server.CA, and a client pair in ClientCert/ClientKey).
	TLS bool
}

// Server is a running etcd member.
type Server struct {
	// Endpoint is host:port of the client listener.
	Endpoint string
	// CA, ClientCert and ClientKey are PEM files when Options.TLS.
	CA, ClientCert, ClientKey string

	t    testing.TB
	dir  string
	opts Options
	peer string
	e    *embed.Etcd
}

// Start runs a member until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), opts: opts}
	s.Endpoint = net.JoinHostPort("127.0.0.1", fmt.Sprint(freePort(t)))
	s.peer = net.JoinHostPort("127.0.0.1", fmt.Sprint(freePort(t)))
	if opts.TLS {
		s.makeCerts()
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	t := s.t
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(s.dir, "data")
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(s.dir, "etcd.log")}
	// bcrypt's least cost (golang.org/x/crypto/bcrypt.MinCost) for the
	// passwords of etcd's users: each check of one at the default cost
	// (10) took seconds under -race on a busy 2-core machine, and a test
	// checks which credentials pass, not how hard they are to guess.
	cfg.BcryptCost = 4
	scheme := "http"
	if s.opts.TLS {
		scheme = "https"
		// No TrustedCAFile: etcd would then require client certificates.
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: filepath.Join(s.dir, "server.pem"), KeyFile: filepath.Join(s.dir, "server-key.pem")}
	}
	client := url.URL{Scheme: scheme, Host: s.Endpoint}
	peer := url.URL{Scheme: "http", Host: s.peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		t.Fatal("etcd did not become ready in 60 s")
	}
	s.e = e
}

// Stop stops the member (its data stays for Restart).
func (s *Server) Stop() {
	if s.e != nil {
		s.e.Close()
		<-s.e.Server.StopNotify()
		s.e = nil
	}
}

// Restart starts the stopped member again on the same ports and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// makeCerts writes a CA, a server pair for 127.0.0.1 and a client pair.
func (s *Server) makeCerts() {
	t := s.t
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdtest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	s.CA = s.writePEM("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		s.writePEM(name+".pem", "CERTIFICATE", der)
		s.writePEM(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
	s.ClientCert, s.ClientKey = filepath.Join(s.dir, "client.pem"), filepath.Join(s.dir, "client-key.pem")
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (s *Server) writePEM(name, typ string, der []byte) string {
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}
