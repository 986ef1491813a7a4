// Package e2e drives the real peergram and peergram-relay binaries on
// loopback as a user would, through their CLIs only: delivery while both
// sides are online, offline delivery through a relay mailbox, relay
// restarts and crashes, and what a relay's data directory may contain.
package e2e
