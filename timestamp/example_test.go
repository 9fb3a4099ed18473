package timestamp_test

import (
	"crypto/sha256"
	"fmt"

	"github.com/passerelle/passerelle/timestamp"
)

// A batch of message hashes gets one Merkle root (the TSA stamps that); each
// message keeps its path, stored in evidence as timestamp.path.
func ExampleNewBatch() {
	var msgs []timestamp.Hash
	for _, m := range []string{"request 1", "response 1", "request 2"} {
		msgs = append(msgs, sha256.Sum256([]byte(m)))
	}
	batch, err := timestamp.NewBatch(msgs)
	if err != nil {
		panic(err)
	}
	path, _ := batch.Path(1)
	text, _ := path.MarshalText()
	parsed, err := timestamp.ParseBatchPath(text)
	fmt.Println(batch.Size(), len(path.Proof), parsed.Index, err)
	// Output: 3 2 1 <nil>
}
