package crdt

import (
	"framesync"
)

// ChangesAfter returns the changes of the document made after the version
// since (all of them for empty since), as uncompressed change chunks in an
// order where each follows its dependencies, with their hashes and the
// heads they lead to, all read in one step. A replica that forwards its
// changes elsewhere keeps the returned heads as the since of its next call.
func (d *Doc) ChangesAfter(since Heads) (chunks [][]byte, hashes []ChangeHash, heads Heads, err error) {
	cHeapTick()
	const op = "list changes"
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := checkHeads(d.am, op, since); err != nil {
		return nil, nil, nil, err
	}
	chs, err := d.am.Changes(amHeads(since)...)
	if err != nil {
		return nil, nil, nil, internal(op, err)
	}
	for _, c := range chs {
		chunks = append(chunks, c.Save())
		hashes = append(hashes, ChangeHash(c.Hash()))
	}
	return chunks, hashes, headsOf(d.am), nil
}

// ChangesMessage wraps change chunks (from ChangesAfter or SetGate) in a sync
// message that carries nothing else (no heads, needs or Bloom filters), so
// that a replica applies them with Session.Receive, with every check a
// received message gets: a new Session on the receiving document takes the
// message, applies what is causally ready and holds back the rest until
// its dependencies arrive. Inspect lists the changes of such a message.
func ChangesMessage(chunks [][]byte) []byte {
	n := 4
	for _, c := range chunks {
		n += len(c) + 5
	}
	b := make([]byte, 0, n)
	b = append(b, msgTypeSync, 0, 0, 0) // type, no heads, no need, no have
	b = appendUleb(b, uint64(len(chunks)))
	for _, c := range chunks {
		b = appendUleb(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// ApplyChanges applies a message made by ChangesMessage (from another
// replica, received over a network) to d with the checks of
// Session.Receive and the Accept policy of opts, and returns the hashes of
// the changes it carried. Changes d already has are skipped.
func (d *Doc) ApplyChanges(msg []byte, opts *SessionOptions) ([]ChangeHash, error) {
	info, err := Inspect(msg)
	if err != nil {
		return nil, err
	}
	if len(info.Heads) > 0 || len(info.Need) > 0 || info.Have > 0 {
		return nil, errorf(framesync.BadInput, "apply changes", "not a changes message: it has heads, needs or Bloom filters")
	}
	hs := make([]ChangeHash, len(info.Changes))
	for i, c := range info.Changes {
		hs[i] = c.Hash
	}
	return hs, NewSession(d, opts).Receive(msg)
}
