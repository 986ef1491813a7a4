package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peergram/peergram/node"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/relay"
	"github.com/peergram/peergram/relay/mailbox"
)

// D4 measures what a daemon costs a desktop: the resident memory of each
// daemon (its own process) after it has sent or received cfg.n4 messages,
// and at half of them (it must not keep growing), and the bytes its store
// holds per message beyond the text, once the daemon has stopped (Badger
// flushes and closes its files). The daemons are this binary started
// again in daemon-child mode, which runs exactly what `peergram daemon`
// runs (node.New and Run).

// childArg is the first argument that makes this binary a daemon.
const childArg = "daemon-child"

// Targets of D4.
const (
	maxRSS           = 150 << 20 // bytes
	maxStoreOverhead = 1024      // bytes per message beyond its text
)

// childGC is the value-log GC interval of D4's daemons: short, so that
// the store bytes D4 reports are those after garbage collection (a desktop
// daemon collects every node.DefaultGCInterval).
const childGC = 2 * time.Second

// runChild runs a node daemon for home with one relay until SIGTERM or
// SIGINT (`peergram-bench daemon-child HOME RELAY`).
func runChild(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s HOME RELAY", childArg)
	}
	node.ApplyMemoryLimit()
	n, err := node.New(node.Config{Home: args[0], Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Relays: []string{args[1]}, DisableMDNS: true, GCInterval: childGC})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if path := os.Getenv("PEERGRAM_BENCH_HEAP"); path != "" {
		// For profiling D4: the heap when the daemon is told to stop.
		go func() {
			<-ctx.Done()
			if f, err := os.Create(path + "." + filepath.Base(args[0])); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	return n.Run(ctx)
}

// childDaemon is a daemon in its own process.
type childDaemon struct {
	*daemon
	cmd  *exec.Cmd
	exit chan error
	log  *bytes.Buffer
}

func startChild(ctx context.Context, home, relayAddr string) (*childDaemon, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(home, "api.sock"))
	cmd := exec.Command(exe, childArg, home, relayAddr)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childDaemon{cmd: cmd, exit: make(chan error, 1), log: log}
	go func() { c.exit <- cmd.Wait() }()
	deadline := time.After(setupTimeout)
	for {
		if _, err := os.Stat(filepath.Join(home, "api")); err == nil {
			break
		}
		select {
		case err := <-c.exit:
			return nil, fmt.Errorf("daemon %s exited: %v: %s", home, err, log)
		case <-deadline:
			c.stop()
			return nil, fmt.Errorf("daemon %s did not start: %s", home, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	tok, err := readToken(home)
	if err != nil {
		c.stop()
		return nil, err
	}
	c.daemon = &daemon{home: home, relay: relayAddr, api: localapi.NewUnixClient(filepath.Join(home, "api.sock"), tok)}
	return c, nil
}

// stop ends the daemon with SIGTERM and waits for it.
func (c *childDaemon) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exit:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exit
	}
}

// rss returns the process's anonymous resident memory in bytes (RssAnon:
// its heap and stacks, not the store's files mapped in, which the kernel
// drops and reloads as it needs).
func (c *childDaemon) rss() (int64, error) { return c.status("RssAnon:") }

// status reads one kB field of /proc/PID/status, in bytes.
func (c *childDaemon) status(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, c.cmd.Process.Pid)
}

// dirSize sums the sizes of the files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	return total, err
}

// runD4 sends cfg.n4 texts from Alice to Bob (online) through Alice's API,
// in two halves; after each half, once every message is stored at Bob and
// Alice's outbox is empty, it reads both daemons' RSS.
func runD4(ctx context.Context, cfg config) (string, error) {
	var c cleanup
	defer c.run()
	relayHome, err := tempDir(&c)
	if err != nil {
		return "", err
	}
	if err := relay.Init(relayHome); err != nil {
		return "", err
	}
	rl, err := relay.New(relay.Config{Home: relayHome, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		DepositBudgets: mailbox.Unlimited, MaxMailboxEnvelopes: max(cfg.n4, mailbox.DefaultMaxMailboxEnvelopes)})
	if err != nil {
		return "", err
	}
	rctx, cancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- rl.Run(rctx) }()
	c.add(func() { cancel(); <-rdone })
	select {
	case <-rl.Ready():
	case err := <-rdone:
		return "", fmt.Errorf("relay: %w", err)
	}
	relayAddr := fmt.Sprintf("%s/p2p/%s", rl.Addrs()[0], rl.ID())
	var ds [2]*childDaemon
	var ids [2]string
	for i, name := range []string{"alice", "bob"} {
		dir, err := tempDir(&c)
		if err != nil {
			return "", err
		}
		home := filepath.Join(dir, name)
		info, err := node.Init(home, name)
		if err != nil {
			return "", err
		}
		ids[i] = info.AccountID
		if ds[i], err = startChild(ctx, home, relayAddr); err != nil {
			return "", err
		}
		c.add(ds[i].stop)
	}
	alice, bob := ds[0], ds[1]
	sctx, cancelSetup := context.WithTimeout(ctx, setupTimeout)
	defer cancelSetup()
	for _, d := range ds {
		if err := d.waitStatus(sctx, "relay ready", func(st localapi.Status) bool { return len(st.Relays) == 1 && st.Relays[0].Ready }); err != nil {
			return "", err
		}
	}
	if _, err := alice.api.AddContact(sctx, ids[1], "bob"); err != nil {
		return "", err
	}
	if _, err := bob.api.AddContact(sctx, ids[0], "alice"); err != nil {
		return "", err
	}
	var rss, vm [2][2]int64 // [half][daemon]: RssAnon, VmRSS
	start := time.Now()
	for half := range 2 {
		if err := alice.post(ctx, "bob", cfg.n4/2); err != nil {
			return "", err
		}
		want := int64((half + 1) * (cfg.n4 / 2))
		wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		err := bob.waitStatus(wctx, "all stored at Bob", func(s localapi.Status) bool { return s.Received >= want })
		if err == nil {
			err = alice.waitStatus(wctx, "Alice's outbox empty", func(s localapi.Status) bool { return s.Outbox == 0 })
		}
		cancel()
		if err != nil {
			return "", err
		}
		time.Sleep(2 * time.Second) // let background flushes settle
		for i, d := range ds {
			if rss[half][i], err = d.rss(); err != nil {
				return "", err
			}
			if vm[half][i], err = d.status("VmRSS:"); err != nil {
				return "", err
			}
		}
	}
	took := time.Since(start)
	// Let garbage collection catch up: wait until neither store shrinks
	// for 10 s (at most two minutes).
	var store [2]int64
	settle := time.Now().Add(2 * time.Minute)
	for stable := 0; stable < 5 && time.Now().Before(settle); {
		time.Sleep(2 * time.Second)
		shrank := false
		for i, d := range ds {
			b, err := dirSize(filepath.Join(d.home, "store"))
			if err != nil {
				return "", err
			}
			if store[i] == 0 || b < store[i] {
				shrank = true
			}
			store[i] = b
		}
		if shrank {
			stable = 0
		} else {
			stable++
		}
	}
	for i, d := range ds {
		d.stop()
		if store[i], err = dirSize(filepath.Join(d.home, "store")); err != nil {
			return "", err
		}
	}
	top := max(rss[1][0], rss[1][1])
	overhead := func(b int64) int64 { return b/int64(cfg.n4) - msgSize }
	mib := func(b int64) string { return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20)) }
	return fmt.Sprintf("D4 ratio=%.3f target=<=1.00 rss_alice=%s/%s rss_bob=%s/%s vmrss_alice=%s/%s vmrss_bob=%s/%s store_overhead_alice=%dB/msg store_overhead_bob=%dB/msg target_store=<=%dB/msg messages=%d rate=%.0f msg/s",
		float64(top)/maxRSS, mib(rss[0][0]), mib(rss[1][0]), mib(rss[0][1]), mib(rss[1][1]),
		mib(vm[0][0]), mib(vm[1][0]), mib(vm[0][1]), mib(vm[1][1]),
		overhead(store[0]), overhead(store[1]), maxStoreOverhead, cfg.n4, float64(cfg.n4)/took.Seconds()), nil
}
