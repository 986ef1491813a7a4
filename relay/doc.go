// Package relay wires a Peergram relay super-node: one libp2p host that
// gives NATed devices circuit relay v2 and AutoNAT, and serves Peergram's
// own protocols (relay/mailbox store-and-forward, relay/directory key
// directory) from one Badger store, with Prometheus metrics and a health
// check for the operator. It owns lifecycle and wiring only; each protocol
// lives in its own subpackage. Relays are untrusted by design: they see
// sealed envelopes, sizes, timing and peer IDs, never plaintext.
//
// # Home directory
//
// Init prepares it; New and Run read it:
//
//	home/            mode 0700
//	  identity.key   libp2p Ed25519 private key (crypto.MarshalPrivateKey), mode 0600
//	  store/         Badger store; its directory lock keeps a second relay out
//	  addrs          full multiaddrs, one per line, while the relay runs
//
// # Lifecycle
//
// New validates the Config and loads the identity; it starts nothing. Run
// starts, in order:
//
//	store            storage.Open(home/store)            (ErrLocked if in use)
//	libp2p host      TCP + QUIC v1, Noise + TLS, yamux,
//	                 resource manager sized from Resources and Limits
//	                 (operatorLimits, OperatorLimits),
//	                 AutoNAT v1 service and v2 server, reachability forced public
//	circuit relay    relayv2.New with Config.Resources (OperatorResources)
//	mailbox server   mailbox.NewServer + Start
//	directory server directory.NewServer + Start (and its expiry loop)
//	listeners        each Config.Listen address; any failure fails Run
//	                 (ErrAddrInUse for a port taken: TCP binds without
//	                 SO_REUSEPORT, so two relays never share a port)
//	HTTP server      GET /metrics, GET /healthz on Config.MetricsAddr (optional);
//	                 /metrics serves the relay's registry with build paths
//	                 cut out of label values (see metrics.go)
//	addrs file       home/addrs, written to a temporary file and renamed
//	store GC         value-log GC every Config.GCInterval
//
// then closes Ready and blocks until its context is done, and stops them
// in reverse order, waiting for every goroutine it started.
//
// The circuit relay service is created directly rather than through
// libp2p.EnableRelayService, which runs it only while AutoNAT says the
// host is public: an operator's relay relays from its first second, and
// Run holds the service to close it in order.
package relay
