package messagelog_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/securityserver/messagelog"
)

func ExampleLog() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "messagelog")
	defer os.RemoveAll(dir)

	l, err := messagelog.Open(ctx, messagelog.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	client, _ := pki.ParseSubsystemID("EE/GOV/70000001/client")
	service, _ := pki.ParseServiceID("EE/GOV/70000003/provider/getPerson")
	jws := []byte("eyJhbGciOiJFUzI1NiJ9.eyJtc2dJZCI6IjEifQ.c2ln")

	// On the hot path: log before forwarding.
	_, err = l.Append(ctx, messagelog.Record{
		MessageID: "4d6f7c1e",
		Kind:      messagelog.KindRequest,
		Direction: messagelog.Sent,
		Side:      messagelog.Consumer,
		Protocol:  messagelog.REST,
		Client:    client,
		Service:   service,
		Signed:    jws,
		Body:      []byte(`{"id":"38001010000"}`),
		BodyMode:  messagelog.BodyMetadataOnly,
	})
	if err != nil {
		log.Fatal(err) // the server refuses the request
	}

	// Later, the batcher and the outbox attach their evidence.
	h := messagelog.HashOf(jws)
	l.AttachTimestamp(ctx, h, messagelog.Timestamp{Token: []byte("DER token"), BatchSize: 1, Time: time.Now()})
	fmt.Println("pending timestamp:", l.Stats().PendingTimestamp, "pending receipt:", l.Stats().PendingReceipt)
	l.AttachReceipt(ctx, h, messagelog.Receipt{Proof: []byte("tlog-proof"), Index: 7})

	recs, _ := l.ByMessageID(ctx, "4d6f7c1e", client)
	r := recs[0]
	fmt.Println(r.Kind, r.Direction, r.Side, r.BodyMode, r.BodyLen, r.Timestamped(), r.Registered())
	// Output:
	// pending timestamp: 0 pending receipt: 1
	// request sent consumer metadata 20 true true
}
