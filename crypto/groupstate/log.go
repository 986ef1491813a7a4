package groupstate

import (
	"bytes"
	"fmt"
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
	entries []*Entry
	undos   []*undo // undos[i] takes back entries[i]; nil once final
	state   *State
	// final: entries up to this index are final (the log once reached
	// ForkWindow entries beyond it, even on a branch since dropped).
	final uint64
}

// NewLog starts a log with a group's creation entry.
func NewLog(create *Entry) (*Log, error) {
	st, err := New(create)
	if err != nil {
		return nil, err
	}
	return &Log{entries: []*Entry{create}, undos: []*undo{nil}, state: st}, nil
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

// State is the state after the last entry. The caller must not change it
// (Clone it to keep it past the next Add).
func (l *Log) State() *State { return l.state }

// Group is the group's ID.
func (l *Log) Group() GroupID { return l.state.Group }

// Head is the last entry.
func (l *Log) Head() *Entry { return l.entries[len(l.entries)-1] }

// Entries returns the entries from seq on, oldest first.
func (l *Log) Entries(from uint64) []*Entry {
	if from >= uint64(len(l.entries)) {
		return nil
	}
	return append([]*Entry(nil), l.entries[from:]...)
}

// Add verifies e and adds it to the log. An entry already in the log is
// accepted again and changes nothing. An entry that competes with one in
// the log (the same predecessor) is resolved by the fork rule (see the
// package comment): if it wins, the entries it displaces are returned,
// oldest first; if it loses, ErrLostFork. Any error leaves the log as it
// was.
func (l *Log) Add(e *Entry) (dropped []*Entry, err error) {
	head := l.Head()
	switch {
	case e.Seq < uint64(len(l.entries)) && l.entries[e.Seq].hash == e.hash:
		return nil, nil // have it
	case e.Seq == 0:
		return nil, fmt.Errorf("%w: the creation of another group", ErrChain)
	case e.Seq == head.Seq+1:
		return nil, l.appendEntry(e)
	case e.Seq > head.Seq+1:
		return nil, fmt.Errorf("%w: entry %d, log at %d", ErrGap, e.Seq, head.Seq)
	}
	fork := e.Seq - 1 // e competes with entries[e.Seq]
	if l.entries[fork].hash != e.Prev {
		return nil, fmt.Errorf("%w: entry %d follows an entry not in the log", ErrChain, e.Seq)
	}
	if fork < l.final {
		return nil, fmt.Errorf("%w: entry %d, final up to %d", ErrFinal, e.Seq, l.final)
	}
	// Back to the fork point.
	rest := l.entries[fork+1:]
	rest = append([]*Entry(nil), rest...)
	for i := len(l.entries) - 1; i > int(fork); i-- {
		l.state.revert(l.undos[i])
	}
	l.entries, l.undos = l.entries[:fork+1], l.undos[:fork+1]
	restore := func() {
		for _, r := range rest {
			if err := l.appendEntry(r); err != nil {
				panic(fmt.Sprintf("groupstate: an entry of the log no longer applies: %v", err))
			}
		}
	}
	rival := rest[0]
	if err := l.state.check(e); err != nil {
		restore()
		return nil, err
	}
	if why := displaces(l.state, e, rest); why != "" {
		restore()
		return nil, fmt.Errorf("%w: entry %d (%s by %s) %s", ErrLostFork, e.Seq, e.Change.Kind, e.Author(), why)
	}
	if !wins(l.state, e, rival) {
		restore()
		return nil, fmt.Errorf("%w: entry %d (%s by %s) against %s by %s", ErrLostFork, e.Seq, e.Change.Kind, e.Author(), rival.Change.Kind, rival.Author())
	}
	if err := l.appendEntry(e); err != nil {
		restore() // cannot happen: checked above
		return nil, err
	}
	return rest, nil
}

// displaces says why e may not replace the entries rest (the branch from
// the fork point st on), or "" if it may: a fork never drops an entry by
// an author of a higher role than e's author at the fork point. So a
// member removed after some member's entry cannot fork that entry to undo
// its removal, however it grinds its entry's hash: whoever removes,
// bans or demotes an account holds a higher role than it.
func displaces(st *State, e *Entry, rest []*Entry) string {
	re := st.Role(e.Author())
	for _, r := range rest {
		if st.Role(r.Author()) > re {
			return fmt.Sprintf("would drop entry %d by a %s", r.Seq, st.Role(r.Author()))
		}
	}
	return ""
}

// wins reports whether e beats rival, both following the state st: the
// author with the higher role there, then the smaller hash.
func wins(st *State, e, rival *Entry) bool {
	re, rr := st.Role(e.Author()), st.Role(rival.Author())
	if re != rr {
		return re > rr
	}
	return bytes.Compare(e.hash[:], rival.hash[:]) < 0
}

func (l *Log) appendEntry(e *Entry) error {
	u, err := l.state.applyUndo(e)
	if err != nil {
		return err
	}
	l.entries = append(l.entries, e)
	l.undos = append(l.undos, u)
	for e.Seq > l.final+ForkWindow {
		l.final++
		l.undos[l.final] = nil
	}
	return nil
}
