package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/kvmify/kvmify/disk"
)

// Export is one disk offered by a Server under a name.
type Export struct {
	// Name is what clients ask for; "" is the default export.
	Name string
	// Description is sent in NBD_INFO_DESCRIPTION and NBD_OPT_LIST.
	Description string
	// Backend holds the data; its optional disk interfaces decide what is
	// advertised.
	Backend disk.Reader
	// ReadOnly refuses writes even when Backend is a disk.Writer.
	ReadOnly bool
}

// MultiConnSafe is implemented by backends that may advertise
// NBD_FLAG_CAN_MULTI_CONN. That flag promises a client that a FLUSH on one
// connection makes writes completed on every other connection durable and
// that all connections see one consistent disk, so only a backend that knows
// its Flush covers all writers (one shared, concurrency-safe store) may
// return true. Read-only exports are always multi-conn safe.
type MultiConnSafe interface {
	MultiConnSafe() bool
}

// ErrServerClosed is returned by Serve after Shutdown or context
// cancellation.
var ErrServerClosed = errors.New("nbd: server closed")

// Server serves exports over NBD. Its fields are read when Serve starts and
// must not change afterwards.
type Server struct {
	// Exports maps export names to exports.
	Exports map[string]Export
	// TLSConfig enables NBD_OPT_STARTTLS; TLS 1.3 is enforced.
	TLSConfig *tls.Config
	// TLSRequired refuses every option but STARTTLS and ABORT before TLS.
	TLSRequired bool
	// HandshakeTimeout bounds negotiation; zero means 30 seconds.
	HandshakeTimeout time.Duration
	// Limits bound what clients can make the server hold; see Limits.
	Limits Limits

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	served    int // connections in conns that were not refused
	wg        sync.WaitGroup
	pool      bufPool
	mem       sharedBudget
	limits    Limits // with defaults filled in, fixed by initLimits
	limitsSet bool
}

// defaultHandshakeTimeout keeps a silent client from holding a goroutine
// forever during negotiation.
const defaultHandshakeTimeout = 30 * time.Second

// Serve accepts connections on l until ctx is cancelled or Shutdown is
// called; it then stops accepting, lets in-flight requests finish and be
// answered, closes every connection and returns ErrServerClosed, after which
// the caller may flush and close the backends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if err := s.check(); err != nil {
		return err
	}
	if !s.trackListener(l) {
		l.Close()
		return ErrServerClosed
	}
	stop := context.AfterFunc(ctx, func() { s.Shutdown() })
	defer stop()
	var tempDelay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				s.wg.Wait()
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			s.Shutdown()
			s.wg.Wait()
			return fmt.Errorf("nbd: accept: %w", err)
		}
		tempDelay = 0
		cn := s.newConn(c)
		if cn == nil {
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			cn.serve(ctx)
		}()
	}
}

// Shutdown stops every Serve call: listeners close at once, connections stop
// reading new requests, answer the ones in flight and close. It does not
// wait; Serve returns once all connections are gone.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stop()
	}
}

// check validates the configuration once, so connections can trust it.
func (s *Server) check() error {
	if len(s.Exports) == 0 {
		return errors.New("nbd: no exports")
	}
	for name, e := range s.Exports {
		if e.Name != name {
			return fmt.Errorf("nbd: export %q registered under name %q", e.Name, name)
		}
		if len(name) > maxNameLen || len(e.Description) > maxNameLen {
			return fmt.Errorf("nbd: export %q: name or description longer than %d bytes", name, maxNameLen)
		}
		if e.Backend == nil {
			return fmt.Errorf("nbd: export %q has no backend", name)
		}
		if e.Backend.Size() < 0 {
			return fmt.Errorf("nbd: export %q has negative size", name)
		}
	}
	if s.TLSRequired && s.TLSConfig == nil {
		return errors.New("nbd: TLSRequired without TLSConfig")
	}
	return s.Limits.check()
}

func (s *Server) trackListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.initLimits()
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// newConn registers a connection, or returns nil when shutting down.
func (s *Server) newConn(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.initLimits()
	c := &conn{srv: s, raw: nc, nc: nc}
	if s.limits.MaxConnections > 0 && s.served >= s.limits.MaxConnections {
		// Refused connections are told why and closed; they are tracked
		// so that shutdown waits for them too, but hold no budget.
		c.refused = true
	} else {
		s.served++
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

// initLimits fixes the limits when the first connection or Serve call
// needs them; the caller holds mu.
func (s *Server) initLimits() {
	if s.limitsSet {
		return
	}
	s.limitsSet = true
	s.limits = s.Limits.withDefaults()
	s.mem.give(s.limits.Memory)
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if !c.refused {
		s.served--
	}
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return defaultHandshakeTimeout
}

func (s *Server) tlsConfig() *tls.Config {
	cfg := s.TLSConfig.Clone()
	if cfg.MinVersion < tls.VersionTLS13 {
		cfg.MinVersion = tls.VersionTLS13
	}
	return cfg
}
