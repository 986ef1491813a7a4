package groupstate

import (
	"bytes"
	"fmt"
	"slices"
)

// ForkWindow is how many of a log's last entries a concurrent change may
// still compete with; older entries are final.
const ForkWindow = 16

// ErrGap reports an entry further ahead than the next one: the entries in
// between are missing (fetch them first).
var ErrGap = fmt.Errorf("%w: entries missing before it", ErrChain)

// Log is a group's verified log and the state after it. Not safe for
// concurrent use.
type Log struct {
	entries entryList // shared by Clones (see entryList)
	undos   []*undo   // undos[i] takes back entries[final+1+i], the entries not final
	state   *State
	// final: entries up to this index are final (the log once reached
	// ForkWindow entries beyond it, even on a branch since dropped).
	final uint64
	// pinned: a branch is being applied in place of entries that may
	// come back (AddBranch): final stays where it is until it is in.
	pinned bool
}

// NewLog starts a log with a group's creation entry.
func NewLog(create *Entry) (*Log, error) {
	st, err := New(create)
	if err != nil {
		return nil, err
	}
	l := &Log{state: st}
	l.entries.push(create)
	return l, nil
}

// Replay verifies a whole log, oldest first, as a member that joins does.
// Entries that lost a fork must not be in it.
func Replay(entries []*Entry) (*Log, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: empty log", ErrChain)
	}
	l, err := NewLog(entries[0])
	if err != nil {
		return nil, err
	}
	for _, e := range entries[1:] {
		if err := l.appendEntry(e); err != nil {
			return nil, fmt.Errorf("entry %d: %w", e.Seq, err)
		}
	}
	return l, nil
}

// Clone returns a copy of l that shares nothing changeable with it: one
// verified log can serve readers that each add to their copy. It costs
// the state's copy, not the log's length (the entries, immutable, are
// shared until either log adds one).
func (l *Log) Clone() *Log {
	return &Log{entries: l.entries.clone(), undos: slices.Clone(l.undos), state: l.state.Clone(), final: l.final}
}

// State is the state after the last entry. The caller must not change it
// (Clone it to keep it past the next Add).
func (l *Log) State() *State { return l.state }

// Group is the group's ID.
func (l *Log) Group() GroupID { return l.state.Group }

// Head is the last entry.
func (l *Log) Head() *Entry { return l.entries.at(l.entries.len() - 1) }

// At returns the entry at seq, or nil if the log is shorter.
func (l *Log) At(seq uint64) *Entry {
	if seq >= uint64(l.entries.len()) {
		return nil
	}
	return l.entries.at(int(seq))
}

// With returns a copy of l with the consecutive entries es in place of
// its entries from es[0].Seq on (those it holds the same are kept; if it
// holds all of es, l as it is): the log as whoever sent es holds it, each entry verified as it is added,
// whichever branch the fork rule would keep. es must follow an entry of
// l (ErrChain, or ErrGap past its head) that is not final (ErrFinal). It
// costs the state's copy and es, not the log's length.
func (l *Log) With(es []*Entry) (*Log, error) {
	for len(es) > 0 && es[0].Seq < uint64(l.entries.len()) && l.entries.at(int(es[0].Seq)).hash == es[0].hash {
		es = es[1:] // have it
	}
	c := l.Clone()
	if len(es) == 0 {
		return c, nil
	}
	for i := 1; i < len(es); i++ {
		if es[i].Seq != es[i-1].Seq+1 || es[i].Prev != es[i-1].hash {
			return nil, fmt.Errorf("%w: entry %d does not follow entry %d", ErrChain, es[i].Seq, es[i-1].Seq)
		}
	}
	e, head := es[0], l.Head()
	switch {
	case e.Seq == 0:
		return nil, fmt.Errorf("%w: the creation of another group", ErrChain)
	case e.Seq > head.Seq+1:
		return nil, fmt.Errorf("%w: entry %d, log at %d", ErrGap, e.Seq, head.Seq)
	case e.Seq <= head.Seq:
		if l.entries.at(int(e.Seq-1)).hash != e.Prev {
			return nil, fmt.Errorf("%w: entry %d follows an entry not in the log", ErrChain, e.Seq)
		}
		if e.Seq-1 < l.final {
			return nil, fmt.Errorf("%w: entry %d, final up to %d", ErrFinal, e.Seq, l.final)
		}
		c.cut(e.Seq)
	}
	for _, x := range es {
		if err := c.appendEntry(x); err != nil {
			return nil, fmt.Errorf("entry %d: %w", x.Seq, err)
		}
	}
	return c, nil
}

// Entries returns the entries from seq on, oldest first.
func (l *Log) Entries(from uint64) []*Entry {
	if from >= uint64(l.entries.len()) {
		return nil
	}
	return l.entries.from(int(from))
}

// Add verifies e and adds it to the log: AddBranch of e alone.
func (l *Log) Add(e *Entry) (dropped []*Entry, err error) {
	return l.AddBranch([]*Entry{e})
}

// AddBranch verifies es, consecutive entries (each follows the one
// before), and adds them to the log. Entries the log holds already are
// passed over. The rest either extend the log, or compete with the
// log's entries from the same predecessor on: then the two branches are
// resolved by the fork rule (see the package comment) — the branch whose
// authors' highest role at the fork point is higher wins; at equal
// highest roles, the branch whose first author's role is higher; then
// the branch whose first entry has the smaller hash. If es's branch wins,
// the entries it displaces are returned, oldest first; if it loses,
// ErrLostFork. Given a whole branch at once, every member reaches the
// same log whatever order the branches came in. Any error leaves the log
// as it was, but for entries of es that extended the log before the one
// that failed.
func (l *Log) AddBranch(es []*Entry) (dropped []*Entry, err error) {
	for len(es) > 0 && es[0].Seq < uint64(l.entries.len()) && l.entries.at(int(es[0].Seq)).hash == es[0].hash {
		es = es[1:] // have it
	}
	if len(es) == 0 {
		return nil, nil
	}
	for i := 1; i < len(es); i++ {
		if es[i].Seq != es[i-1].Seq+1 || es[i].Prev != es[i-1].hash {
			return nil, fmt.Errorf("%w: entry %d does not follow entry %d", ErrChain, es[i].Seq, es[i-1].Seq)
		}
	}
	e, head := es[0], l.Head()
	switch {
	case e.Seq == 0:
		return nil, fmt.Errorf("%w: the creation of another group", ErrChain)
	case e.Seq == head.Seq+1:
		for _, x := range es {
			if err := l.appendEntry(x); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case e.Seq > head.Seq+1:
		return nil, fmt.Errorf("%w: entry %d, log at %d", ErrGap, e.Seq, head.Seq)
	}
	fork := e.Seq - 1 // es competes with entries[e.Seq:]
	if l.entries.at(int(fork)).hash != e.Prev {
		return nil, fmt.Errorf("%w: entry %d follows an entry not in the log", ErrChain, e.Seq)
	}
	if fork < l.final {
		return nil, fmt.Errorf("%w: entry %d, final up to %d", ErrFinal, e.Seq, l.final)
	}
	// Back to the fork point. Until the branch is in, no entry becomes
	// final: a branch longer than ForkWindow that fails late must find
	// the undos to go back (it once found none, and panicked).
	l.pinned = true
	defer l.unpin()
	rest := l.entries.from(int(fork) + 1)
	l.cut(fork + 1)
	restore := func() {
		l.cut(fork + 1)
		for _, r := range rest {
			if err := l.appendEntry(r); err != nil {
				panic(fmt.Sprintf("groupstate: an entry of the log no longer applies: %v", err))
			}
		}
	}
	if err := l.state.check(e); err != nil {
		restore()
		return nil, err
	}
	if !branchWins(l.state, es, rest) {
		restore()
		return nil, fmt.Errorf("%w: entry %d (%s by %s) against %s by %s", ErrLostFork, e.Seq, e.Change.Kind, e.Author(), rest[0].Change.Kind, rest[0].Author())
	}
	for _, x := range es {
		if err := l.appendEntry(x); err != nil {
			restore()
			return nil, err
		}
	}
	return rest, nil
}

// branchWins reports whether branch b beats branch r, both following
// the state st: the higher of their authors' highest roles at st, then
// the higher role of their first authors, then the smaller hash of their
// first entries. So a fork never drops an entry by an author of a higher
// role than every author of the branch that would replace it: a member
// removed after some member's entry cannot fork that entry to undo its
// removal, however it grinds its entry's hash — whoever removes, bans or
// demotes an account holds a higher role than it.
func branchWins(st *State, b, r []*Entry) bool {
	top := func(es []*Entry) Role {
		var m Role
		for _, e := range es {
			m = max(m, st.Role(e.Author()))
		}
		return m
	}
	if tb, tr := top(b), top(r); tb != tr {
		return tb > tr
	}
	if rb, rr := st.Role(b[0].Author()), st.Role(r[0].Author()); rb != rr {
		return rb > rr
	}
	return bytes.Compare(b[0].hash[:], r[0].hash[:]) < 0
}

func (l *Log) appendEntry(e *Entry) error {
	u, err := l.state.applyUndo(e)
	if err != nil {
		return err
	}
	l.entries.push(e)
	l.undos = append(l.undos, u)
	l.settle()
	return nil
}

// settle makes final the entries ForkWindow or more before the head,
// unless a branch is being applied.
func (l *Log) settle() {
	for !l.pinned && l.Head().Seq > l.final+ForkWindow {
		l.final++
		l.undos = l.undos[1:]
	}
}

func (l *Log) unpin() {
	l.pinned = false
	l.settle()
}

// cut takes back the entries from n on (none of them final), newest
// first.
func (l *Log) cut(n uint64) {
	final := int(l.final)
	for i := l.entries.len() - 1; i >= int(n); i-- {
		l.state.revert(l.undos[i-final-1])
	}
	l.entries.cut(int(n))
	l.undos = l.undos[:int(n)-final-1]
}
