package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// StreamProtocolID is direct delivery of many envelopes on one stream:
// the sender writes them as frames (uvarint length, envelope) and closes
// its side; the receiver answers one status byte per envelope, in order
// (directOK or directRejected), each once the envelope is stored. The
// receiver commits the envelopes that arrived together in one batch, so
// a contact that is online gets a conversation's burst at the speed of
// its store, not of one stream and one sync per message. Nodes that only
// speak ProtocolID get one stream per envelope.
const StreamProtocolID = "/peergram/msg/2.0.0"

const (
	// maxStreamFrames bounds the envelopes one stream carries; a sender
	// opens another for more.
	maxStreamFrames = 1024
	// streamBatch bounds the envelopes the receiver commits together.
	streamBatch = 512
	// perEnvelopeTime is added to directTimeout for each envelope of a
	// stream.
	perEnvelopeTime = 5 * time.Millisecond
	// streamHeld bounds the envelope bytes a receiving stream holds read
	// but not yet stored (a peer could otherwise make it buffer 1,024
	// envelopes of up to 256 KiB each).
	streamHeld = 2 << 20
	// streamBatchBytes bounds the envelope bytes committed in one batch.
	streamBatchBytes = 1 << 20
)

// byteBudget bounds the bytes held between a reader and its consumer, in
// units of budgetUnit: acquire blocks while the budget is spent.
type byteBudget chan struct{}

const budgetUnit = 16 << 10

func newByteBudget(max int) byteBudget { return make(byteBudget, max/budgetUnit) }

func budgetUnits(n int) int { return n/budgetUnit + 1 }

func (b byteBudget) acquire(n int) {
	for range budgetUnits(n) {
		b <- struct{}{}
	}
}

func (b byteBudget) release(n int) {
	for range budgetUnits(n) {
		<-b
	}
}

// sendDirectAll hands envs to peer p on one stream per maxStreamFrames
// envelopes, in order, and returns each one's outcome. After a stream
// fails, the envelopes it did not answer and the later ones get its
// error.
func (n *Node) sendDirectAll(ctx context.Context, p peer.ID, relays []string, envs [][]byte) []error {
	errs := make([]error, len(envs))
	for start := 0; start < len(envs); start += maxStreamFrames {
		part := envs[start:min(start+maxStreamFrames, len(envs))]
		acks, err := n.sendDirectStream(ctx, p, relays, part)
		for k := range part {
			switch {
			case k >= len(acks):
				errs[start+k] = err
			case acks[k] != directOK:
				errs[start+k] = fmt.Errorf("peer rejected the envelope")
			}
		}
		if err != nil {
			for k := start + len(part); k < len(envs); k++ {
				errs[k] = err
			}
			break
		}
	}
	return errs
}

// sendDirectStream sends envs on one stream and returns the answers it
// got, in order, and the error that ended the stream early.
func (n *Node) sendDirectStream(ctx context.Context, p peer.ID, relays []string, envs [][]byte) ([]byte, error) {
	if n.host.Network().Connectedness(p) != network.Connected {
		n.addCircuitAddrs(p, relays)
		if len(n.host.Peerstore().Addrs(p)) == 0 {
			return nil, fmt.Errorf("no address")
		}
	}
	timeout := directTimeout + time.Duration(len(envs))*perEnvelopeTime
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "peergram-msg"), p, StreamProtocolID, ProtocolID)
	if err != nil {
		return nil, err
	}
	if s.Protocol() != StreamProtocolID {
		// An older node: one stream per envelope.
		_ = s.Reset()
		acks := make([]byte, 0, len(envs))
		for _, env := range envs {
			if err := n.sendDirect(ctx, p, relays, env); err != nil {
				return acks, err
			}
			acks = append(acks, directOK)
		}
		return acks, nil
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(timeout))
	w := bufio.NewWriter(s)
	for _, env := range envs {
		if err := writeFrame(w, env); err != nil {
			s.Reset()
			return nil, err
		}
	}
	if err := w.Flush(); err != nil {
		s.Reset()
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return nil, err
	}
	acks := make([]byte, len(envs))
	got, err := io.ReadFull(s, acks)
	if err != nil {
		s.Reset()
		return acks[:got], fmt.Errorf("no acknowledgement: %w", err)
	}
	return acks, nil
}

// handleDirectStream receives envelopes on one stream (StreamProtocolID)
// and answers each once stored, committing those that arrived together as
// one batch. A transient failure resets the stream: the sender tries again
// (or the relay) for every envelope not yet answered.
func (n *Node) handleDirectStream(s network.Stream) {
	n.streamsIn.Add(1)
	if !n.takesDirect() {
		// The sender deposits in the mailbox instead (see takesDirect).
		n.log.Debug("direct: refused while the mailbox drains", "peer", s.Conn().RemotePeer())
		_ = s.Reset()
		return
	}
	defer s.Close()
	frames := make(chan []byte, streamBatch)
	held := newByteBudget(streamHeld)
	drain := func() {
		for e := range frames {
			held.release(len(e))
		}
	}
	var readErr error // set before frames is closed
	go func() {
		defer close(frames)
		br := bufio.NewReader(s)
		for range maxStreamFrames {
			_ = s.SetReadDeadline(time.Now().Add(directTimeout * 2))
			env, err := readFrame(br)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			held.acquire(len(env))
			frames <- env
		}
	}()
	w := bufio.NewWriter(s)
	ctx := context.Background()
	batch := make([][]byte, 0, streamBatch)
	for env := range frames {
		batch = append(batch[:0], env)
		size := len(env)
	more:
		for len(batch) < streamBatch && size < streamBatchBytes {
			select {
			case e, ok := <-frames:
				if !ok {
					break more
				}
				batch = append(batch, e)
				size += len(e)
			default:
				break more
			}
		}
		errs := n.receiveBatch(ctx, batch)
		for _, e := range batch {
			held.release(len(e))
		}
		for _, err := range errs {
			ack := directOK
			switch {
			case err == nil:
			case errors.Is(err, errPermanent):
				ack = directRejected
			default:
				n.log.Info("direct: envelope not stored; the sender will retry", "peer", s.Conn().RemotePeer(), "err", err)
				s.Reset()
				drain()
				return
			}
			if err := w.WriteByte(ack); err != nil {
				s.Reset()
				drain()
				return
			}
		}
		_ = s.SetWriteDeadline(time.Now().Add(directTimeout))
		if err := w.Flush(); err != nil {
			s.Reset()
			drain()
			return
		}
	}
	if readErr != nil {
		n.log.Info("direct: bad frame", "peer", s.Conn().RemotePeer(), "err", readErr)
		s.Reset()
	}
}
