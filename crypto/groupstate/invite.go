package groupstate

import (
	"crypto/ed25519"
	"encoding/base64"

	"github.com/peergram/peergram/crypto/identity"
)

// An invite link is an Ed25519 key pair: KindInviteCreate records the
// public key (Ref), the link carries the private key's seed, and a
// KindJoin entry proves the link with a signature by that key over the
// group and the joining account (the entry's Text). The log is public to
// every relay that keeps the group's history, so a Ref alone must not
// let anyone join; and the proof names the joiner, so a join seen in the
// log cannot be replayed by someone else.

const inviteLabel = "peergram/group-invite/v1"

// InviteProof is the Text of a KindJoin entry: the invite key's
// signature over the group and the joining account.
func InviteProof(invite ed25519.PrivateKey, group GroupID, joiner identity.AccountID) string {
	sig := ed25519.Sign(invite, inviteSigned(group, joiner))
	return base64.RawURLEncoding.EncodeToString(sig)
}

func inviteSigned(group GroupID, joiner identity.AccountID) []byte {
	b := append([]byte(inviteLabel), 0)
	b = append(b, group[:]...)
	return append(b, joiner[:]...)
}

// validInviteProof reports whether proof is the signature of the invite
// key ref over group and joiner.
func validInviteProof(ref [32]byte, group GroupID, joiner identity.AccountID, proof string) bool {
	sig, err := base64.RawURLEncoding.DecodeString(proof)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(ref[:]), inviteSigned(group, joiner), sig)
}
