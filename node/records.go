package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/node/chat"
)

// Records on the hot path (outbox jobs, message records) are stored in a
// binary form: a version byte, then protobuf wire fields (protowire). JSON
// cost more CPU than anything else on the daemon path (validating and
// unquoting kilobyte texts, base64 payloads, on every status change and
// outbox read). Records written before are JSON; a JSON record starts with
// '{', which no binary record does, so both read the same. Unknown fields
// are skipped, so a newer node's records stay readable by an older one's
// decoder and fields can be added.
const recordV1 = 0x01

// errRecord is the error of a record that cannot be decoded.
var errRecord = errors.New("malformed record")

// Field numbers of a job record.
const (
	jobSeq      = 1
	jobID       = 2
	jobTo       = 3
	jobPayload  = 4
	jobSentAt   = 5
	jobDone     = 6
	jobAttempts = 7
	jobNextAt   = 8
	jobText     = 9
)

// encodeJob returns j's record without its sealed copies (those are
// stored apart, see putSealed).
func encodeJob(j *job) []byte {
	b := make([]byte, 0, 96+len(j.Payload))
	b = append(b, recordV1)
	b = appendUvarint(b, jobSeq, j.Seq)
	b = appendBytes(b, jobID, j.ID[:])
	b = appendBytes(b, jobTo, j.To[:])
	b = appendBytes(b, jobPayload, j.Payload)
	b = appendVarint(b, jobSentAt, j.SentAt)
	for _, d := range j.Done {
		b = appendBytes(b, jobDone, []byte(d))
	}
	b = appendUvarint(b, jobAttempts, uint64(j.Attempts))
	b = appendVarint(b, jobNextAt, j.NextAt)
	if j.Text {
		b = appendUvarint(b, jobText, 1)
	}
	return b
}

// decodeJob reads a job record, binary or JSON.
func decodeJob(raw []byte) (*job, error) {
	var j job
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("%w: %w", errRecord, err)
		}
		return &j, nil
	}
	err := decodeFields(raw, func(num protowire.Number, v uint64, b []byte) error {
		switch num {
		case jobSeq:
			j.Seq = v
		case jobID:
			return fixed(j.ID[:], b)
		case jobTo:
			return fixed(j.To[:], b)
		case jobPayload:
			j.Payload = append([]byte(nil), b...)
		case jobSentAt:
			j.SentAt = protowire.DecodeZigZag(v)
		case jobDone:
			j.Done = append(j.Done, string(b))
		case jobAttempts:
			j.Attempts = int(min(v, 1<<31))
		case jobNextAt:
			j.NextAt = protowire.DecodeZigZag(v)
		case jobText:
			j.Text = v != 0
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &j, nil
}

// Field numbers of a message record (storedMessage).
const (
	msgID          = 1
	msgChat        = 2
	msgFrom        = 3
	msgOutgoing    = 4
	msgText        = 5
	msgSentSec     = 6
	msgSentNsec    = 7
	msgRecvSec     = 8
	msgRecvNsec    = 9
	msgStatus      = 10
	msgSeq         = 11
	msgFromName    = 12
	msgFromContact = 13
	msgWarning     = 14
	msgError       = 15
	msgPending     = 16
	msgFile        = 17 // JSON of chat.FileInfo: small, rare, and its fields grow
	msgForwarded   = 18 // JSON of chat.Forward: small and rare
)

func encodeMessage(sm *storedMessage) []byte {
	b := make([]byte, 0, 128+len(sm.Text))
	b = append(b, recordV1)
	b = appendString(b, msgID, sm.ID)
	b = appendString(b, msgChat, sm.Chat)
	b = appendString(b, msgFrom, sm.From)
	if sm.Outgoing {
		b = appendUvarint(b, msgOutgoing, 1)
	}
	b = appendString(b, msgText, sm.Text)
	b = appendTime(b, msgSentSec, msgSentNsec, sm.SentAt)
	b = appendTime(b, msgRecvSec, msgRecvNsec, sm.Received)
	b = appendString(b, msgStatus, string(sm.Status))
	if sm.Seq != 0 {
		b = appendUvarint(b, msgSeq, sm.Seq)
	}
	b = appendString(b, msgFromName, sm.FromName)
	if sm.FromContact {
		b = appendUvarint(b, msgFromContact, 1)
	}
	b = appendString(b, msgWarning, sm.Warning)
	b = appendString(b, msgError, sm.Error)
	for _, p := range sm.Pending {
		b = appendBytes(b, msgPending, []byte(p))
	}
	if sm.File != nil {
		if fb, err := json.Marshal(sm.File); err == nil { // a struct of strings and numbers always encodes
			b = appendBytes(b, msgFile, fb)
		}
	}
	if sm.Forwarded != nil {
		if fb, err := json.Marshal(sm.Forwarded); err == nil {
			b = appendBytes(b, msgForwarded, fb)
		}
	}
	return b
}

// decodeStoredMessage reads a message record, binary or JSON.
func decodeStoredMessage(raw []byte) (*storedMessage, error) {
	var sm storedMessage
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &sm); err != nil {
			return nil, fmt.Errorf("%w: %w", errRecord, err)
		}
		return &sm, nil
	}
	var sentSec, sentNsec, recvSec, recvNsec int64
	var sent, recv bool
	err := decodeFields(raw, func(num protowire.Number, v uint64, b []byte) error {
		switch num {
		case msgID:
			sm.ID = string(b)
		case msgChat:
			sm.Chat = string(b)
		case msgFrom:
			sm.From = string(b)
		case msgOutgoing:
			sm.Outgoing = v != 0
		case msgText:
			sm.Text = string(b)
		case msgSentSec:
			sentSec, sent = protowire.DecodeZigZag(v), true
		case msgSentNsec:
			sentNsec = int64(min(v, 999_999_999))
		case msgRecvSec:
			recvSec, recv = protowire.DecodeZigZag(v), true
		case msgRecvNsec:
			recvNsec = int64(min(v, 999_999_999))
		case msgStatus:
			sm.Status = chat.Status(b)
		case msgSeq:
			sm.Seq = v
		case msgFromName:
			sm.FromName = string(b)
		case msgFromContact:
			sm.FromContact = v != 0
		case msgWarning:
			sm.Warning = string(b)
		case msgError:
			sm.Error = string(b)
		case msgPending:
			sm.Pending = append(sm.Pending, string(b))
		case msgFile:
			var fi chat.FileInfo
			if err := json.Unmarshal(b, &fi); err != nil {
				return fmt.Errorf("%w: file: %w", errRecord, err)
			}
			sm.File = &fi
		case msgForwarded:
			var f chat.Forward
			if err := json.Unmarshal(b, &f); err != nil {
				return fmt.Errorf("%w: forwarded: %w", errRecord, err)
			}
			sm.Forwarded = &f
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sent {
		sm.SentAt = time.Unix(sentSec, sentNsec).UTC()
	}
	if recv {
		sm.Received = time.Unix(recvSec, recvNsec).UTC()
	}
	return &sm, nil
}

// decodeFields calls f for every field of a binary record: v for varint
// fields, b for length-delimited ones (b aliases raw). Other wire types
// are refused: no record of ours has them.
func decodeFields(raw []byte, f func(num protowire.Number, v uint64, b []byte) error) error {
	if len(raw) == 0 || raw[0] != recordV1 {
		return fmt.Errorf("%w: unknown version", errRecord)
	}
	raw = raw[1:]
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return fmt.Errorf("%w: %w", errRecord, protowire.ParseError(n))
		}
		raw = raw[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(raw)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(raw)
		default:
			return fmt.Errorf("%w: field %d has wire type %d", errRecord, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %w", errRecord, num, protowire.ParseError(n))
		}
		raw = raw[n:]
		if err := f(num, v, b); err != nil {
			return err
		}
	}
	return nil
}

func fixed(dst, b []byte) error {
	if len(b) != len(dst) {
		return fmt.Errorf("%w: %d bytes where %d belong", errRecord, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

func appendUvarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendVarint(b []byte, num protowire.Number, v int64) []byte {
	return appendUvarint(b, num, protowire.EncodeZigZag(v))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendString appends a non-empty string (an empty one is the default).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendTime appends a non-zero time as seconds and nanoseconds.
func appendTime(b []byte, sec, nsec protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = appendVarint(b, sec, t.Unix())
	if ns := t.Nanosecond(); ns != 0 {
		b = appendUvarint(b, nsec, uint64(ns))
	}
	return b
}
