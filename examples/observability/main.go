// Observability: a consumer that exposes Prometheus metrics on /metrics and
// its health on /healthz and /readyz, and logs franz-go's own lines with its
// own.
//
//	go run ./examples/observability                  # on an embedded cluster
//	FERRY_BROKERS=127.0.0.1:9092 go run ./examples/observability
//	curl localhost:8080/metrics; curl localhost:8080/healthz; curl localhost:8080/readyz
//
// A producer writes an order every 10 ms; every 100th order fails once, so
// ferry_retries_total moves too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/event"
	"github.com/ferrykit/ferry/ferryprom"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "where to serve /metrics, /healthz and /readyz")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx is cancelled; listening, if not nil, learns the
// address once the server listens.
func run(ctx context.Context, addr string, listening chan<- string) error {
	// ferrytest.Start uses FERRY_BROKERS when set, else an embedded cluster.
	cluster, err := ferrytest.Start()
	if err != nil {
		return err
	}
	defer cluster.Close()
	const topic = "orders"
	if err := cluster.CreateTopic(ctx, topic, 4); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := ferryprom.New(reg)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)) // franz-go's warnings and errors land here too
	var failedOnce sync.Map
	app, err := ferry.New(
		ferry.Brokers(cluster.Brokers()...),
		ferry.Logger(logger),
		ferry.OnEvent(metrics.Observe),
		ferry.OnEvent(func(e event.Event) { // any number of subscribers
			if e, ok := e.(event.DeadLettered); ok {
				logger.Warn("parked an order", "offset", e.Offset)
			}
		}),
		ferry.FailingTimeout(time.Minute),      // /healthz fails if a partition keeps failing this long
		ferry.ConsumeStallTimeout(time.Minute), // … or if one Consume call runs this long (a hung handler)
		ferry.RouteFunc("fulfilment", topic, func(ctx context.Context, b *ferry.Batch) error {
			for _, m := range b.Messages {
				n, _ := strconv.Atoi(string(m.Value))
				if n%100 == 99 {
					if _, seen := failedOnce.LoadOrStore(n, true); !seen {
						return ferry.FailedAt(m, errors.New("warehouse busy"))
					}
				}
			}
			return nil
		}, ferry.Retry(ferry.ConstantBackoff(200*time.Millisecond))),
	)
	if err != nil {
		return err
	}
	metrics.Watch(app) // lag and assignment gauges

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", app.HealthHandler())
	mux.Handle("/readyz", app.HealthHandler())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("serving http://%s/metrics, /healthz and /readyz; Ctrl-C to stop\n", ln.Addr())
	if listening != nil {
		listening <- ln.Addr().String()
	}

	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	wg.Go(func() { produce(ctx, cluster, topic) })
	runErr := app.Run(ctx)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	wg.Wait()
	return errors.Join(runErr, err)
}

// produce writes a numbered order every 10 ms until ctx is cancelled.
func produce(ctx context.Context, cluster *ferrytest.Cluster, topic string) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := cluster.Produce(ctx, topic, &kgo.Record{Value: []byte(strconv.Itoa(n))}); err != nil && ctx.Err() == nil {
			log.Printf("produce: %v", err)
		}
	}
}
