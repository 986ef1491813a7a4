// Package turnserver runs a relay's STUN/TURN server for calls
// (github.com/pion/turn) and hands out the credentials it takes.
//
// Why credentials over libp2p: a TURN server open to anyone is an open
// traffic relay. Credentials are issued on ProtocolID only to a device
// that proves itself: its device certificate (signed by its account) and
// a signature by the device key over the relay's and the requester's
// peer IDs and the time, so a request cannot be replayed by another peer.
// They are TURN REST credentials (username "<expiry>:<account>", password
// HMAC-SHA1 of it under a secret drawn at each start), checked by the TURN
// server without any state, and they expire (TTL, 10 minutes by default;
// an allocation made before expiry lives on while refreshed). Media
// through the relay stays DTLS-SRTP between the callers: the relay sees
// ciphertext and packet timing only.
package turnserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/pion/turn/v4"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/internal/ratelimit"
)

// ProtocolID is the credential protocol: the client writes one Request
// (JSON, at most MaxRequest bytes) and closes its side; the server
// answers one Credentials or Refusal (JSON) and closes.
const ProtocolID = "/peergram/turn/1.0.0"

// RequestLabel is the domain-separation label of a request's signature.
const RequestLabel = "peergram/turn/request/v1"

// MaxRequest bounds a request (a device certificate is under 300 bytes).
const MaxRequest = 4 << 10

// Request asks for credentials.
type Request struct {
	Cert []byte `json:"cert"` // identity.DeviceCert, binary
	Time int64  `json:"time"` // unix ms
	Sig  []byte `json:"sig"`  // device key over Signed(relay, requester, Time)
}

// Credentials are what a device puts in its ICE servers.
type Credentials struct {
	URLs     []string  `json:"urls"`
	Username string    `json:"username"`
	Password string    `json:"password"`
	Expires  time.Time `json:"expires"`
	Error    string    `json:"error,omitempty"` // a refusal
}

// Signed is what a request's signature covers.
func Signed(relay, requester peer.ID, timeMs int64) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(relay)))
	b = append(b, relay...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(requester)))
	b = append(b, requester...)
	return binary.BigEndian.AppendUint64(b, uint64(timeMs))
}

// Config configures a Server.
type Config struct {
	Host host.Host
	// Listen is the UDP host:port of the TURN server ("127.0.0.1:0" in
	// tests). PublicIP is the address clients reach it at and relayed
	// ports are announced with; default Listen's host, which must then
	// not be unspecified.
	Listen   string
	PublicIP string
	// TTL is how long credentials are good for (default 10 minutes).
	TTL time.Duration
	// Burst and Every rate-limit requests per account (default 20 per
	// 3 s refill).
	Burst int
	Every time.Duration
	// AllowPeer says whether a client may relay to a peer IP besides the
	// server's own (other allocations). Default: global unicast
	// addresses only — never loopback, private, link-local, multicast
	// or unspecified ones, so the relay is no way into its own host or
	// network (review finding: pion's default allows every address).
	AllowPeer func(net.IP) bool
	Log       *slog.Logger
	Now       func() time.Time
}

// Server is a running TURN server and its credential protocol.
type Server struct {
	cfg    Config
	secret string
	turn   *turn.Server
	conn   net.PacketConn
	urls   []string
	limit  *ratelimit.Limiter[identity.AccountID]
}

// New starts the TURN server on cfg.Listen and serves ProtocolID on
// cfg.Host; Close stops both.
func New(cfg Config) (*Server, error) {
	if cfg.Host == nil {
		return nil, errors.New("turnserver: no host")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Minute
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 20
	}
	if cfg.Every <= 0 {
		cfg.Every = 3 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	conn, err := net.ListenPacket("udp4", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr)
	public := net.ParseIP(cfg.PublicIP)
	if public == nil {
		if addr.IP.IsUnspecified() {
			conn.Close()
			return nil, errors.New("turnserver: listening on every interface needs a public IP")
		}
		public = addr.IP
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		conn.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, secret: base64.StdEncoding.EncodeToString(key[:]), conn: conn,
		limit: ratelimit.New[identity.AccountID](cfg.Burst, cfg.Every, 100000)}
	hostPort := net.JoinHostPort(public.String(), strconv.Itoa(addr.Port))
	s.urls = []string{"turn:" + hostPort + "?transport=udp", "stun:" + hostPort}
	relayBase := addr.IP.String()
	allow := cfg.AllowPeer
	if allow == nil {
		allow = PublicPeer
	}
	permit := func(_ net.Addr, ip net.IP) bool { return ip.Equal(public) || allow(ip) }
	s.turn, err = turn.NewServer(turn.ServerConfig{
		Realm:       "peergram",
		AuthHandler: turn.LongTermTURNRESTAuthHandler(s.secret, nil),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: public, Address: relayBase},
			PermissionHandler:     permit,
		}},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	cfg.Host.SetStreamHandler(ProtocolID, s.handle)
	return s, nil
}

// PublicPeer is the default AllowPeer: a global unicast address that is
// not private.
func PublicPeer(ip net.IP) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast()
}

// URLs are the server's turn: and stun: URLs.
func (s *Server) URLs() []string { return s.urls }

// Addr is the UDP address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Close stops the credential protocol and the TURN server.
func (s *Server) Close() error {
	s.cfg.Host.RemoveStreamHandler(ProtocolID)
	return s.turn.Close()
}

func (s *Server) handle(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	answer := func(c Credentials) { _ = json.NewEncoder(st).Encode(c) }
	b, err := io.ReadAll(io.LimitReader(st, MaxRequest+1))
	if err != nil || len(b) > MaxRequest {
		answer(Credentials{Error: "request too large or unreadable"})
		return
	}
	var req Request
	if err := json.Unmarshal(b, &req); err != nil {
		answer(Credentials{Error: "malformed request"})
		return
	}
	acct, err := s.check(&req, st.Conn().LocalPeer(), st.Conn().RemotePeer())
	if err != nil {
		s.cfg.Log.Info("turn: credentials refused", "peer", st.Conn().RemotePeer(), "err", err)
		answer(Credentials{Error: err.Error()})
		return
	}
	now := s.cfg.Now()
	if !s.limit.Allow(acct, now) {
		answer(Credentials{Error: "too many requests"})
		return
	}
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(s.secret, acct.String()[:16], s.cfg.TTL)
	if err != nil {
		answer(Credentials{Error: "internal error"})
		return
	}
	answer(Credentials{URLs: s.urls, Username: user, Password: pass, Expires: now.Add(s.cfg.TTL)})
}

// check verifies a request's certificate, time and signature, made for
// this relay by the peer that sent it.
func (s *Server) check(req *Request, self, from peer.ID) (identity.AccountID, error) {
	cert, err := identity.ParseDeviceCert(req.Cert)
	if err != nil {
		return identity.AccountID{}, fmt.Errorf("certificate: %w", err)
	}
	if err := cert.Verify(); err != nil {
		return identity.AccountID{}, fmt.Errorf("certificate: %w", err)
	}
	now := s.cfg.Now()
	if t := time.UnixMilli(req.Time); t.Before(now.Add(-5*time.Minute)) || t.After(now.Add(5*time.Minute)) {
		return identity.AccountID{}, errors.New("signed more than 5 minutes from now")
	}
	if !identity.Verify(cert.Device.PublicKey(), RequestLabel, Signed(self, from, req.Time), req.Sig) {
		return identity.AccountID{}, errors.New("bad signature")
	}
	return cert.Account, nil
}

// Fetch asks relay for credentials as the device dev (certified by
// cert).
func Fetch(ctx context.Context, h host.Host, relay peer.ID, dev *identity.DeviceKey, cert *identity.DeviceCert) (Credentials, error) {
	raw, err := cert.MarshalBinary()
	if err != nil {
		return Credentials{}, err
	}
	now := time.Now().UnixMilli()
	req := Request{Cert: raw, Time: now, Sig: dev.Sign(RequestLabel, Signed(relay, h.ID(), now))}
	st, err := h.NewStream(ctx, relay, ProtocolID)
	if err != nil {
		return Credentials{}, fmt.Errorf("turnserver: %w", err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	if err := json.NewEncoder(st).Encode(req); err != nil {
		return Credentials{}, fmt.Errorf("turnserver: %w", err)
	}
	_ = st.CloseWrite()
	var c Credentials
	if err := json.NewDecoder(io.LimitReader(st, 8<<10)).Decode(&c); err != nil {
		return Credentials{}, fmt.Errorf("turnserver: %w", err)
	}
	if c.Error != "" {
		return Credentials{}, fmt.Errorf("turnserver: refused: %s", c.Error)
	}
	return c, nil
}
