package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Choosing a store, and what its failures mean to an operator.

// StoreConfig chooses the coordinator's store. The zero value is Badger in
// the site's data directory.
type StoreConfig struct {
	// URL is "badger" (or empty) or etcd://HOST:PORT[,HOST:PORT…]
	// (etcds:// for TLS with the system's roots).
	URL string
	// Etcd holds TLS, auth and prefix options; its Endpoints come from URL
	// and its Prefix defaults to DefaultEtcdPrefix(site id).
	Etcd EtcdConfig
	// Instance names this coordinator among the site's members
	// (members.go): [a-z0-9-], at most 63; DefaultInstance() (the host
	// name) when empty. Two live coordinators of a site on etcd may not
	// share one.
	Instance string
}

// IsEtcd reports whether the config names an etcd store.
func (c StoreConfig) IsEtcd() bool { return c.URL != "" && c.URL != "badger" }

// ParseStoreURL checks a --store value: "badger" or etcd(s)://endpoints.
// It returns the etcd endpoints (nil for Badger) and whether etcds:// asked
// for TLS.
func ParseStoreURL(s string) (endpoints []string, useTLS bool, err error) {
	if s == "" || s == "badger" {
		return nil, false, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		return nil, false, invalidStoref("store %q: give badger or etcd://HOST:2379[,HOST:2379…]", s)
	case scheme == "etcds":
		useTLS = true
	case scheme != "etcd":
		return nil, false, invalidStoref("store %q: the scheme is etcd:// or etcds://", s)
	}
	rest = strings.TrimSuffix(rest, "/")
	for _, h := range strings.Split(rest, ",") {
		if _, err := url.Parse("http://" + h); err != nil || h == "" || strings.ContainsAny(h, "/?#@") {
			return nil, false, invalidStoref("store %q: %q is not HOST:PORT", s, h)
		}
		endpoints = append(endpoints, h)
	}
	return endpoints, useTLS, nil
}

// openSiteStore opens the store a coordinator of site runs on.
func openSiteStore(site *Site, cfg StoreConfig, opts StoreOptions) (*Store, error) {
	instance := cfg.Instance
	if instance == "" {
		instance = DefaultInstance()
	} else if err := ValidInstance(instance); err != nil {
		return nil, err
	}
	if !cfg.IsEtcd() {
		st, err := OpenStore(site.StorePath(), opts)
		if err == nil {
			st.instance = instance
		}
		return st, err
	}
	ec, err := cfg.etcdConfig(site.ID.String())
	if err != nil {
		return nil, err
	}
	ec.Instance, ec.Lock = instance, false
	if ec.Holder == "" {
		host, _ := os.Hostname()
		dir, _ := filepath.Abs(site.Dir)
		ec.HolderPlace = fmt.Sprintf("on %s, data %s", host, dir)
		ec.Holder = fmt.Sprintf("pid %d %s", os.Getpid(), ec.HolderPlace)
	}
	if ec.Logger == nil {
		ec.Logger = opts.Logger
	}
	st, err := OpenEtcdStore(ec)
	if err == nil {
		st.instance = instance
	}
	return st, err
}

// etcdConfig is cfg.Etcd with the URL's endpoints and the site's prefix.
func (c StoreConfig) etcdConfig(siteID string) (EtcdConfig, error) {
	endpoints, useTLS, err := ParseStoreURL(c.URL)
	if err != nil {
		return EtcdConfig{}, err
	}
	ec := c.Etcd
	ec.Endpoints = endpoints
	ec.TLS = ec.TLS || useTLS
	if ec.Prefix == "" {
		ec.Prefix = DefaultEtcdPrefix(siteID)
	}
	return ec, nil
}

func (c EtcdConfig) tlsConfig() (*tls.Config, error) {
	if c.CACert == "" && c.Cert == "" && c.Key == "" && !c.TLS && !c.InsecureSkipVerify {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, invalidStoref("reading the etcd CA certificate: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, invalidStoref("%s holds no PEM certificate", c.CACert)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, invalidStoref("give both --etcd-cert and --etcd-key, or neither")
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, invalidStoref("loading the etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func invalidStoref(format string, args ...any) error {
	return catalog.Errorf(catalog.CodeInvalidArgument, format, args...)
}

func storeInUse(key, holder string, ttl time.Duration) error {
	return catalog.Errorf(catalog.CodeStoreInUse, "(%s holds %s; if it stopped without closing, its lease lapses within %s)", holder, key, ttl)
}

// etcdOpenError names the endpoints in what etcdError makes of err.
func etcdOpenError(endpoints []string, err error) error {
	err = etcdError(err)
	var ce *catalog.Error
	if errors.As(err, &ce) && ce.Code != catalog.CodeInternal && ce.Code != catalog.CodeInvalidArgument && ce.Code != catalog.CodeStoreInUse {
		return catalog.Errorf(ce.Code, "(etcd at %s: %w)", strings.Join(endpoints, ","), ce.Err)
	}
	return err
}

// etcdError gives an etcd client error its catalog code: unreachable, TLS
// or credentials; anything else stays internal (the log has it).
func etcdError(err error) error {
	if err == nil {
		return nil
	}
	var ce *catalog.Error
	if errors.As(err, &ce) {
		return err
	}
	msg := err.Error()
	st, _ := status.FromError(err)
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken),
		errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrUserEmpty),
		st != nil && (st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied):
		return catalog.Errorf(catalog.CodeStoreAuth, "(%w)", err)
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") || strings.Contains(msg, "authentication handshake failed"):
		return catalog.Errorf(catalog.CodeStoreTLS, "(%w)", err)
	case errors.Is(err, context.DeadlineExceeded), st != nil && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded),
		strings.Contains(msg, "connection refused"):
		return catalog.Errorf(catalog.CodeStoreUnreachable, "(%w)", err)
	}
	return fmt.Errorf("etcd: %w", err)
}

// diagnoseEndpoints explains why no endpoint answered: every endpoint
// refuses TCP (unreachable), or one fails the TLS handshake, or speaks TLS
// to a client that was not told to. nil when it finds nothing wrong.
func diagnoseEndpoints(endpoints []string, tlsCfg *tls.Config, timeout time.Duration) error {
	var tcpErrs []string
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			continue
		}
		d := &net.Dialer{Timeout: min(timeout, 3*time.Second)}
		conn, err := d.Dial("tcp", u.Host)
		if err != nil {
			tcpErrs = append(tcpErrs, err.Error())
			continue
		}
		probe := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
		if tlsCfg != nil {
			probe = tlsCfg.Clone()
			probe.NextProtos = []string{"h2"}
			if probe.ServerName == "" && !probe.InsecureSkipVerify {
				probe.ServerName = u.Hostname()
			}
		}
		tc := tls.Client(conn, probe)
		tc.SetDeadline(time.Now().Add(min(timeout, 3*time.Second)))
		err = tc.Handshake()
		tc.Close()
		switch {
		case tlsCfg != nil && err != nil:
			return catalog.Errorf(catalog.CodeStoreTLS, "(etcd at %s: %w)", u.Host, err)
		case tlsCfg == nil && err == nil:
			return catalog.Errorf(catalog.CodeStoreTLS, "(etcd at %s serves TLS: use etcds:// or --etcd-cacert)", u.Host)
		}
	}
	if len(tcpErrs) == len(endpoints) && len(tcpErrs) > 0 {
		return catalog.Errorf(catalog.CodeStoreUnreachable, "(%s)", strings.Join(tcpErrs, "; "))
	}
	return nil
}
