// Package localapitest provides an in-memory localapi.Backend, so that the
// API, its Client and the CLI can be tested without a node, a network or a
// store.
package localapitest
