// Package crdt holds the Automerge documents of a room: typed access to the
// trajectory document (Trajectory) and the state document (State), sync
// sessions with other replicas (Session), snapshots, inspection of incoming
// changes (who wrote what, before applying it) and diffs between two versions
// of a document. It is the only package of the module that imports
// automerge-go; no automerge type appears in its API.
//
// # Documents and versions
//
// A Doc is one replica of a document, safe for concurrent use. Save returns a
// snapshot, LoadDoc reads one (optionally followed by SaveIncremental chunks).
// A version of a document is named by its Heads (change hashes), printed as
// comma-separated hex and parsed by ParseHeads, so versions can be stored and
// sent (for example as a ?since= parameter). Diff on a Trajectory or a State
// compares two versions; Doc.OnChange reports every change, local or
// received, with the heads before and after.
//
// Trajectory and State documents start with a skeleton change that is the
// same bytes on every replica (fixed actor 00000000000000000000000000000000,
// time 0), so two replicas created independently merge without their root
// objects conflicting. Every key below is in the root map.
//
// # Trajectory document (written by the hub only)
//
//	layout      string   "framesync/trajectory@1"
//	frames      list of string, one element per frame, in order:
//	              "<id> <version> <hash> <time> <author>"
//	history     map: frame id -> list of string, oldest first:
//	              "<version> <hash> <time> <author>"
//	generation  counter
//
// id is 16 lower-case hex digits (random, stable across edits); version is a
// decimal integer from 1; hash is the frame manifest's framesync.Hash printed
// as "sha256:<64 hex digits>"; time is decimal milliseconds since the Unix
// epoch; author (the peer or user who asked for the version) is everything
// after the fourth space and may itself contain spaces. In JavaScript:
//
//	const [id, version, hash, time, ...rest] = String(entry).split(" ")
//	const author = rest.join(" ")
//
// (Automerge 3 reads these scalar strings as ImmutableString; String() or
// .toString() gives the string.) A frame's history is stored only once the
// frame has more than one version or is deleted; until then its single
// version is the one in its entry. Each edit (Append, Extend, Insert,
// Delete, Move, Replace, Revert) is one Automerge change whose message names
// the edit and the author, and increments generation by one. generation is a
// counter so that concurrent edits by several hubs add up instead of
// overwriting each other; JavaScript reads it as a Counter (its value with
// Number(...) or .value). Each frame is its own list element, so concurrent
// edits of different frames by several hubs merge; a Replace rewrites one
// element, so of two concurrent replaces of one frame one wins whole, and a
// Move is a delete plus an insert (hubs serialize structural edits with the
// trajectory lock). If a merge ever duplicates an ID, IndexOf, History and
// Diff use its first element; Entries and Len show every element.
//
// Why this layout: it was measured against alternatives at 100,000 frames
// built as 100 extends of 1,000 (layout_test.go; TestLayoutTable prints the
// full table, the command is in that file), on the 2-core build machine:
//
//	layout            load     read entries  snapshot  sync to a fresh replica
//	compact (this)    0.21 s   0.16 s        5.1 MB    0.20 s, 11.4 MB
//	compact+history   0.70 s   0.15 s        8.6 MB    1.29 s, 26.2 MB
//	naive             2.97 s   0.98 s        5.5 MB    1.97 s, 30.0 MB
//
// (Over three runs, loads took 0.21-0.25 s, 0.70-1.17 s and 2.9-3.2 s.)
// "naive" stores each frame as a map {id, version, hash} and each frame's
// history as a list of maps; "compact+history" is this layout with a history
// list for every frame from its first version. The Automerge core's cost
// follows the number of objects, not bytes: naive has four objects per frame
// and misses the 1 s load target by far; a history list per frame alone
// triples the load time and brings it to the limit. So entries are scalar
// strings, one per frame (still one list element per frame, so hubs'
// concurrent edits merge), and histories exist only for the few frames that
// have several versions. Syncing a fresh replica sends the changes
// uncompressed (sync version 1), about twice the snapshot: cold joins should
// start from a snapshot.
//
// # State document (written by every member)
//
//	layout       string   "framesync/state@1"
//	selection    list of int (atom indices); replaced whole by SetSelection
//	bookmarks    map: frame id -> string label
//	step         int: the current frame index
//	camera       map: free JSON object
//	settings     map: free JSON object
//	collections  map: "<collection>/<item id>" -> map (the JSON item)
//
// Members may add other root keys; State.Diff reports them as fields.
// Collection items live in one flat map, keyed by collection name and item
// ID joined by "/" (collection names contain no "/"), rather than in a map
// per collection: two members who create the same collection while offline
// would otherwise each create a map at the same key, and one of the two maps,
// with its items, would be lost in the merge. Update writes items key by key
// in place (as do SetCamera and SetSettings), so concurrent edits of
// different keys of one item merge; an item removed by one member and edited
// by another stays removed.
//
// JSON values map to Automerge values as follows: objects to maps, arrays to
// lists, strings to scalar strings, numbers to int (int64) when integral and
// in range and to float64 otherwise, booleans to booleans, null to null.
// Never uint64, which JavaScript reads as a BigInt. Strings are scalar, not
// Text: JSON values are replaced whole, and scalar strings merge as
// last-writer-wins, while Text would merge two concurrent replacements of
// "red" by "blue" and "green" into a mix of both, and costs an object plus an
// operation per character. JavaScript (Automerge 3) reads scalar strings as
// ImmutableString; its own writes of plain strings are Text, which this
// package reads as strings too. Reading also accepts counters, unsigned
// integers and timestamps (as int64; milliseconds for timestamps) and bytes
// ([]byte).
//
// # Sync
//
// A Session is the sync state with one remote peer; Next and Receive
// exchange Automerge sync messages (version 1: the bundled core predates
// version 2). Session.Save and LoadSession keep what both sides shared, so a
// reconnecting peer resumes with less traffic. Inspect decodes a sync message
// without applying it: its heads, needs, and the hash, author (actor ID),
// sequence number, time and message of each change. The hub refuses foreign
// trajectory changes with SessionOptions.Accept: RefuseNew refuses any change
// the document does not already contain (the hub being the only writer, such
// a change is forged even if it claims the hub's actor ID); AllowActors
// accepts changes by given actors only. Doc.HasChange and Doc.Changes answer
// the same questions for a document.
//
// # Untrusted input and the bundled Automerge core
//
// automerge-go bundles the Rust core 0.5.0 behind a C interface. When the
// core panics, the process aborts (SIGABRT): it cannot be recovered from Go.
// Checksums do not protect against it, since anyone can compute them. Found
// by fuzzing (see TestCoreAbortRegressions and FuzzReceive):
//
//   - a change whose operations name an actor index beyond the change's
//     actor table (object, key or predecessor);
//   - a change putting a map key on a list or text object (or a list position
//     on a map);
//   - a change whose actor sequence number skips ahead (the core later slices
//     the actor's changes by sequence number);
//   - a Bloom filter with entries but zero bits per entry (division by zero
//     when the next message is generated), or with billions of probes (the
//     core allocates and loops per probe);
//   - a saved document with a valid checksum but malformed columns.
//
// So Session.Receive checks every message before the core sees it (Inspect's
// checks on the container and Bloom filters, plus a decoder of the change
// operation columns that checks the properties above against the objects and
// sequence numbers the document already has), applies only changes whose
// dependencies are present, and holds back the others until their
// dependencies arrive (asking the peer for them). Load and LoadIncremental
// check the chunk framing and checksums, which stops random corruption but
// not a crafted document: load documents only from trusted sources (local
// storage, the hub). SessionOptions.TrustPeer turns the operation check off
// for peers as trusted as local storage.
//
// # Errors
//
// Errors are *framesync.Error values (or wrap them) with kinds the hub maps
// to wire codes: NotFound for an index out of range, an unknown frame ID,
// version, item or heads; Conflict for a stale base version; BadInput for
// malformed documents, messages and arguments; Forbidden for changes refused
// by SessionOptions.Accept; TooLarge when too many received changes wait for
// their dependencies; Internal for failures of the Automerge core.
//
// # Memory
//
// The core's memory is released only by Go finalizers (automerge-go has no
// Close). A process holding many documents should drop unused ones and may
// need to run the garbage collector to return their memory.
package crdt
