package node

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

// TestTallyCloseResult: a closed poll shows its creator's close's count
// whatever votes a node holds (a vote dated before the close but sent
// after it, or one this node missed), unless that count does not fit the
// poll; a close by anyone else closes nothing.
func TestTallyCloseResult(t *testing.T) {
	creator, voter, late := identity.AccountID{1}, identity.AccountID{2}, identity.AccountID{3}
	poll := strings.Repeat("ab", 32)
	single := &pollBody{Question: "Lunch?", Options: []string{"pizza", "sushi"}}
	multiple := &pollBody{Question: "Which days?", Options: []string{"mon", "tue", "wed"}, Multiple: true}
	msgs := func(body *pollBody, closeFrom identity.AccountID, result *pollResult) []*groupMessage {
		return []*groupMessage{
			{ID: poll, From: creator, SentAt: 100, Poll: body},
			{ID: "v1", From: voter, SentAt: 200, Vote: &voteBody{Poll: poll, Options: []int{0}}},
			{ID: "c", From: closeFrom, SentAt: 300, Close: poll, Result: result},
			// Dated before the close, taken after it.
			{ID: "v2", From: late, SentAt: 299, Vote: &voteBody{Poll: poll, Options: []int{1}}},
		}
	}
	tests := []struct {
		name   string
		body   *pollBody
		from   identity.AccountID
		result *pollResult
		closed bool
		votes  []int
		voters int
	}{
		{"the close's count", single, creator, &pollResult{Votes: []int{1, 0}, Voters: 1}, true, []int{1, 0}, 1},
		{"a vote this node missed, in the count", single, creator, &pollResult{Votes: []int{2, 0}, Voters: 2}, true, []int{2, 0}, 2},
		{"multiple choice", multiple, creator, &pollResult{Votes: []int{1, 1, 0}, Voters: 1}, true, []int{1, 1, 0}, 1},
		{"a close without a count (older nodes): votes sent before it", single, creator, nil, true, []int{1, 1}, 2},
		{"a count of another poll's options", single, creator, &pollResult{Votes: []int{1, 0, 0}, Voters: 1}, true, []int{1, 1}, 2},
		{"single choice, votes not adding up", single, creator, &pollResult{Votes: []int{5, 5}, Voters: 1}, true, []int{1, 1}, 2},
		{"a count above the voters", multiple, creator, &pollResult{Votes: []int{3, 0, 0}, Voters: 1}, true, []int{1, 2, 0}, 2},
		{"a member's close", single, voter, &pollResult{Votes: []int{0, 9}, Voters: 9}, false, []int{1, 1}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTally()
			for _, m := range msgs(tt.body, tt.from, tt.result) {
				if tt.body == multiple && m.Vote != nil && m.From == voter {
					m.Vote.Options = []int{0, 1}
				}
				tl.add(m)
			}
			p := tl.view(poll, voter)
			var votes []int
			for _, o := range p.Options {
				votes = append(votes, o.Votes)
			}
			if p.Closed != tt.closed || !slices.Equal(votes, tt.votes) || p.Voters != tt.voters {
				t.Fatalf("closed %v, votes %v, voters %d; want %v, %v, %d", p.Closed, votes, p.Voters, tt.closed, tt.votes, tt.voters)
			}
			if len(p.MyVotes) == 0 {
				t.Fatal("the voter's own vote is not shown")
			}
		})
	}
}

// TestCheckCloseResult: a result rides only on a close and is bounded.
func TestCheckCloseResult(t *testing.T) {
	poll := strings.Repeat("cd", 32)
	tests := []struct {
		name string
		body groupBody
		ok   bool
	}{
		{"a close with its count", groupBody{Close: poll, Result: &pollResult{Votes: []int{1, 2}, Voters: 3}}, true},
		{"a close without one", groupBody{Close: poll}, true},
		{"a count on a text", groupBody{Text: "hi", Result: &pollResult{Votes: []int{1}, Voters: 1}}, false},
		{"too many options", groupBody{Close: poll, Result: &pollResult{Votes: make([]int, 11), Voters: 0}}, false},
		{"a negative count", groupBody{Close: poll, Result: &pollResult{Votes: []int{-1, 1}, Voters: 1}}, false},
		{"a count above the voters", groupBody{Close: poll, Result: &pollResult{Votes: []int{2, 0}, Voters: 1}}, false},
		{"voters out of bounds", groupBody{Close: poll, Result: &pollResult{Votes: []int{0, 0}, Voters: maxVoters + 1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.body.check(); (err == nil) != tt.ok {
				t.Fatalf("check: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// FuzzGroupBody: any plaintext a member seals — decoded, checked, stored
// and counted as a poll, a vote or a close in any order — neither panics
// nor counts a vote for an option the poll does not have.
func FuzzGroupBody(f *testing.F) {
	poll := strings.Repeat("ab", 32)
	f.Add([]byte(`{"poll":{"q":"Lunch?","o":["pizza","sushi"]}}`), []byte(`{"vote":{"p":"`+poll+`","o":[1]}}`), []byte(`{"close":"`+poll+`","result":{"v":[0,1],"n":1}}`))
	f.Add([]byte(`{"poll":{"q":"Days","o":["a","b","c"],"m":true}}`), []byte(`{"vote":{"p":"`+poll+`","o":[0,2]}}`), []byte(`{"close":"`+poll+`","result":{"v":[9,9,9],"n":9}}`))
	f.Add([]byte(`{"text":"hi","reply":"`+poll+`"}`), []byte(`{"vote":{"p":"`+poll+`","o":[-1,99]}}`), []byte(`{"close":"`+poll+`","result":{"v":[],"n":-3}}`))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		tl := newTally()
		for i, raw := range [][]byte{a, b, c} {
			var body groupBody
			if json.Unmarshal(raw, &body) != nil || body.check() != nil {
				continue
			}
			gm := groupMessage{ID: poll, From: identity.AccountID{byte(i % 2)}, SentAt: int64(100 * i)}
			if i > 0 {
				gm.ID = strings.Repeat("0", 63) + string(rune('0'+i))
			}
			gm.setBody(&body)
			tl.add(&gm)
		}
		p := tl.view(poll, identity.AccountID{1})
		if p == nil {
			return
		}
		for _, o := range p.MyVotes {
			if o < 0 || o >= len(p.Options) {
				t.Fatalf("a vote for option %d of %d", o, len(p.Options))
			}
		}
		for _, o := range p.Options {
			if o.Votes < 0 || (o.Votes > p.Voters && p.Voters >= 0) {
				t.Fatalf("an option with %d votes of %d voters", o.Votes, p.Voters)
			}
		}
	})
}
