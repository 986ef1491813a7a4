// Package groupstate is a group's state — title, members and their roles,
// bans, permissions, pins, invite links — as a signed, hash-chained log of
// changes that every member verifies on its own.
//
// No server decides who is in a group: a relay keeps the log and passes it
// on but cannot change it, and a member accepts an entry only if it is
// signed by a device certified by its author's account and the author held
// the right to make that change at that point of the log. The group's ID is
// the hash of its first entry, so nobody can present another history for
// the same group from its start.
//
// # Entries
//
// An Entry names the hash of the one before it (Prev) and its height
// (Seq), carries its author's device certificate, the author's clock
// (Unix ms) and one Change, and is signed by the device key (label
// "peergram/group-entry/v1"). Encoding (crypto/internal/wire):
//
//	version(1)=1 || prev[32] || seq u64 || time u64 || cert Var || change || sig[64]
//	change: kind(1) || text Var(≤ MaxText) || ref[32] || account[32] || perms(1) || expires u64
//
// Fields a kind does not use are zero.
//
// # Rights
//
// Roles are owner (the creator), admin and member. The owner does
// everything and alone promotes and demotes admins. Admins change the
// title, description, photo and member permissions, add, remove, ban and
// unban members (not admins or the owner), pin and unpin, and create and
// revoke invite links. A member does what the group's permissions allow
// (PermSend, PermAdd, PermPin, PermInfo; PermAdd also lets it create
// invite links, which it may revoke again), and may leave. The owner may
// not leave (a group always has one). Anyone not banned may join with an
// invite link that is neither revoked nor expired at the time of the join,
// proving it holds the link's key (invite.go).
//
// # Concurrent changes
//
// Two valid entries may extend the same entry (two admins acted at once).
// The two branches from the fork point compete whole (Log.AddBranch):
// the branch whose authors' highest role at the fork point is higher
// wins; at equal highest roles, the one whose first author's role is
// higher; then the one whose first entry has the smaller hash. So a fork
// never drops an entry written by a higher role than every author of the
// branch replacing it (a removed member cannot undo its removal by
// forking an earlier entry and grinding its hash). Members that receive
// whole branches resolve a fork the same way whatever order they saw
// them in; one that receives a branch entry by entry may keep a losing
// entry until the rest of the winning branch comes. The losing branch is
// dropped (AddBranch returns it, so its authors can make their changes
// again on the winning branch if still allowed). An entry is final once the log has reached ForkWindow entries
// beyond it (on any branch the member saw): a fork before it is refused
// (ErrFinal), so a former admin cannot rewrite the past from the point
// where it still had rights. A fork that arrives that late can leave
// members that saw different amounts of the log on different branches;
// they converge by syncing the log from a relay, which keeps what it saw
// first.
//
// The package is pure: no I/O and no clock; callers pass times in.
package groupstate
