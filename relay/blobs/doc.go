// Package blobs is the relay's encrypted blob store — the "cloud" of the
// super-nodes — and its client: nodes upload the chunks of files
// (crypto/filecrypt ciphertext, named by SHA-256) for recipients who are
// offline, and recipients fetch them, whole or by range, when they come
// back.
//
// Why capabilities and not accounts for reading: the recipients of a
// file are whoever got its end-to-end message, which the relay cannot
// know. The uploader draws a random Token per file and puts it in the
// message next to the file's key; the relay keeps only the token's hash
// with each upload and hands a blob only to a request that shows the
// token. A request with any other token — another file's, one guessed —
// gets the same answer as for a blob that does not exist. What the relay
// sees: ciphertext, sizes, which account uploaded, and which peers fetch;
// never names, types or content.
//
// Uploads are signed by the uploader's device and carry its certificate:
// the account is charged (a quota per account, a capacity in all); an
// upload of a blob the account references already renews its expiry.
// Deletions drop the signer's references; a blob's bytes go once nothing
// references it, and a sweeper drops references past their retention.
//
// Protocol /peergram/blob/1.0.0 (frames of relay/internal/protoframe, one
// request per stream): Put 0x01 → Status; Get 0x02 → Data 0x03 or
// Status; Has 0x04 → Have 0x05 (the indices present); Delete 0x06 →
// Status; Status 0x07. Field numbers are in wire.go; docs/protocol.md
// has the table.
package blobs
