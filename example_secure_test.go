package ferry_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// A cluster that requires SASL over TLS — here an embedded one that checks
// ACLs too, started by ferrytest.StartSecured. The app trusts the CA that
// signed the brokers' certificates and authenticates with SCRAM-SHA-512.
func ExampleSASLScramSHA512() {
	dir, err := os.MkdirTemp("", "ferry-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cluster, err := ferrytest.StartSecured(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	topic := ferrytest.UniqueName(ferrytest.SecuredPrefix + "invoices") // the user's ACLs allow this prefix
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.CreateTopic(ctx, topic, 1); err != nil {
		log.Fatal(err)
	}
	if _, err := cluster.ProduceN(ctx, topic, 0, 3); err != nil {
		log.Fatal(err)
	}

	var handled atomic.Int32
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(quiet),
		ferry.TLSFiles(cluster.CAFile, "", ""),
		ferry.SASLScramSHA512(ferrytest.SecuredUser, ferrytest.SecuredUserPassword),
		ferry.RouteFunc(ferrytest.SecuredPrefix+"billing", topic, func(_ context.Context, b *ferry.Batch) error {
			handled.Add(int32(len(b.Messages)))
			return nil
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	runUntil(app, func() bool { return handled.Load() == 3 })
	fmt.Println("invoices handled over SASL_SSL:", handled.Load())
	// Output:
	// invoices handled over SASL_SSL: 3
}
