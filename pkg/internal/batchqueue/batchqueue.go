// Package batchqueue runs a sync loop on client-go's typed rate-limiting
// workqueue: a change queues a key, a sync takes every key queued once
// changes have settled (a quiet period, bounded so constant churn cannot
// hold a sync back for ever), and a failed sync queues a retry with
// exponential backoff. The federation and discovery both sync this way.
package batchqueue

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/fleetmesh/fleetmesh/pkg/internal/recovered"
)

// Options configure a Queue.
type Options struct {
	// Name names the queue in the workqueue metrics.
	Name string
	// Quiet is how long a sync waits after the last change; Max bounds
	// that wait from the first change (10 × Quiet when shorter than
	// Quiet).
	Quiet, Max time.Duration
	// RetryBase and RetryMax bound the backoff of a failing sync's
	// retries: RetryBase doubled at each failure, at most RetryMax
	// (DefaultRetryBase and DefaultRetryMax when 0).
	RetryBase, RetryMax time.Duration
	// OnError hears of every failed sync (a panic included), before its
	// retry is queued.
	OnError func(error)
}

// The backoff of a failing sync, unless told otherwise: 1 s, doubled at
// each failure, at most 30 s.
const (
	DefaultRetryBase = time.Second
	DefaultRetryMax  = 30 * time.Second
)

// Queue is a sync loop's queue of keys.
type Queue[K comparable] struct {
	opts  Options
	queue workqueue.TypedRateLimitingInterface[K]

	mu   sync.Mutex
	last time.Time
}

// New returns an empty queue.
func New[K comparable](opts Options) *Queue[K] {
	if opts.Max < opts.Quiet {
		opts.Max = 10 * opts.Quiet
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = DefaultRetryBase
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	opts.RetryMax = max(opts.RetryMax, opts.RetryBase)
	return &Queue[K]{
		opts: opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[K](opts.RetryBase, opts.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[K]{Name: opts.Name},
		),
	}
}

// Add queues a change.
func (q *Queue[K]) Add(key K) {
	q.mu.Lock()
	q.last = time.Now()
	q.mu.Unlock()
	q.queue.Add(key)
}

// Run calls sync with every batch of keys until ctx ends. A sync that
// fails (or panics) queues retry with backoff; one that succeeds resets
// it. A key queued while its sync runs is synced again after.
func (q *Queue[K]) Run(ctx context.Context, retry K, sync func(ctx context.Context, batch []K) error) error {
	go func() {
		<-ctx.Done()
		q.queue.ShutDown()
	}()
	for {
		first, shutdown := q.queue.Get()
		if shutdown {
			return nil
		}
		// The first key is let go while changes settle: one that comes
		// again meanwhile is taken with the others below, instead of
		// waiting, done, for a sync of its own after this one.
		q.queue.Done(first)
		q.settle(ctx, time.Now())
		taken := map[K]bool{}
		batch := []K{first}
		for q.queue.Len() > 0 {
			key, shutdown := q.queue.Get()
			if shutdown {
				break
			}
			if !taken[key] {
				taken[key] = true
				if key != first {
					batch = append(batch, key)
				}
			}
		}
		err := recovered.Call(func() error { return sync(ctx, batch) })
		for key := range taken {
			q.queue.Done(key)
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			if q.opts.OnError != nil {
				q.opts.OnError(err)
			}
			q.queue.AddRateLimited(retry)
		default:
			q.queue.Forget(retry)
		}
	}
}

// settle waits until no change came for the quiet period, or Max has
// passed since start, or ctx ends.
func (q *Queue[K]) settle(ctx context.Context, start time.Time) {
	for {
		q.mu.Lock()
		wait := time.Until(q.last.Add(q.opts.Quiet))
		q.mu.Unlock()
		wait = min(wait, time.Until(start.Add(q.opts.Max)))
		if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
