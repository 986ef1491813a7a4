// Package repotest holds tests about the repository itself rather than any
// one package: every package has a doc comment, and imports between our
// packages flow one way (cmd → node, relay → calls, crypto, storage).
package repotest
