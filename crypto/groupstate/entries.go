package groupstate

import "slices"

// entryChunk is how many entries an entryList keeps per chunk.
const entryChunk = 1024

// entryList is a log's entries in chunks, so that a Clone shares them
// all and the first entry either copy adds costs one chunk, not the
// log: full chunks are never changed, and the last, partial one is only
// appended to or cut short with its capacity (slices.Clip), so no index
// is ever written twice where a copy may share it.
type entryList struct {
	full [][]*Entry // chunks of entryChunk entries
	tail []*Entry   // the last chunk, fewer than entryChunk
}

func (el *entryList) len() int { return len(el.full)*entryChunk + len(el.tail) }

func (el *entryList) at(i int) *Entry {
	if c := i / entryChunk; c < len(el.full) {
		return el.full[c][i%entryChunk]
	}
	return el.tail[i-len(el.full)*entryChunk]
}

func (el *entryList) push(e *Entry) {
	el.tail = append(el.tail, e)
	if len(el.tail) == entryChunk {
		el.full = append(el.full, el.tail) // (cut clips a chunk it makes the tail again)
		el.tail = nil
	}
}

// cut keeps the first n entries.
func (el *entryList) cut(n int) {
	c := n / entryChunk
	if c < len(el.full) {
		el.tail = el.full[c]
		el.full = slices.Clip(el.full[:c])
	}
	el.tail = slices.Clip(el.tail[:n-c*entryChunk])
}

// from copies the entries from i on.
func (el *entryList) from(i int) []*Entry {
	out := make([]*Entry, 0, max(el.len()-i, 0))
	for ; i < el.len(); i++ {
		out = append(out, el.at(i))
	}
	return out
}

// clone shares el's entries (see entryList).
func (el *entryList) clone() entryList {
	return entryList{full: slices.Clip(el.full), tail: slices.Clip(el.tail)}
}
