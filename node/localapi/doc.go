// Package localapi is the node's local HTTP/JSON API: the one door through
// which the peergram CLI, the web UI and scripts reach a running daemon.
//
// Why HTTP on loopback: every language and tool speaks it, a browser UI can
// use it directly, and it keeps the CLI a thin client of the daemon (as the
// ipfs CLI is of Kubo). The API never listens beyond the machine: Listen and
// Serve refuse non-loopback addresses.
//
// # Security
//
// Every request, on every route, carries the bearer token stored in the
// node's home directory (Authorization: Bearer TOKEN); the token is compared
// in constant time. Browsers are kept out by default: a request carrying an
// Origin header is refused unless that origin is in Config.AllowedOrigins, and
// CORS headers are sent only to listed origins. Request bodies are capped at
// MaxBodyBytes.
//
// # Shape
//
// The route table is in api.go (routes), a line per route. Errors are JSON
// objects {"error": "...", "code": "..."}; the mapping from errors to status
// codes lives in one table (errors.go, errorCodes), used both by the Server to
// answer and by the Client to turn an answer back into the chat sentinel
// errors, so errors.Is works across HTTP. GET /v1/events is a Server-Sent
// Events stream with one JSON chat.Event per "data:" line:
//
//	: connected
//
//	data: {"type":"message","message":{...}}
//
//	: keepalive
//
// docs/api.md documents every route with examples.
//
// # Concurrency
//
// Server and Client are safe for concurrent use. The Backend must be too:
// the Server calls it from one goroutine per request.
package localapi
