package sfu

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/crypto/identity"
)

// Dial opens a signalling stream to relay's SFU and sends a join for
// call in group, signed by dev (certified by cert). The SFU's answer —
// an offer, or an error — is the first message on the returned
// connection (calls.Engine.JoinGroup reads it).
func Dial(ctx context.Context, h host.Host, relay peer.ID, group [32]byte, call string, dev *identity.DeviceKey, cert *identity.DeviceCert) (*sfuproto.Conn, error) {
	raw, err := cert.MarshalBinary()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	m := &sfuproto.Message{Type: sfuproto.TypeJoin, Group: fmt.Sprintf("%x", group[:]), Call: call, Cert: raw, Time: now,
		Sig: dev.Sign(sfuproto.JoinLabel, sfuproto.JoinSigned(relay.String(), h.ID().String(), group, call, now))}
	if err := m.Check(); err != nil {
		return nil, err
	}
	str, err := h.NewStream(ctx, relay, sfuproto.ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("sfu: %w", err)
	}
	c := sfuproto.NewConn(str)
	if err := c.Send(m); err != nil {
		str.Reset()
		return nil, fmt.Errorf("sfu: %w", err)
	}
	return c, nil
}
