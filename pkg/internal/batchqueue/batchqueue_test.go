package batchqueue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a sync that records its batches and fails while told to.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	fail    int
	synced  chan struct{}
}

func (r *recorder) sync(_ context.Context, batch []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := slices.Clone(batch)
	slices.Sort(b)
	r.batches = append(r.batches, b)
	r.synced <- struct{}{}
	if r.fail > 0 {
		r.fail--
		return errors.New("refused")
	}
	return nil
}

func run(t *testing.T, opts Options, r *recorder) (*Queue[string], func()) {
	t.Helper()
	q := New[string](opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Run(ctx, "retry", r.sync)
	}()
	return q, func() { cancel(); <-done }
}

func wait(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case <-r.synced:
	case <-time.After(10 * time.Second):
		t.Fatal("no sync")
	}
}

func TestChangesThatComeTogetherAreSyncedTogetherOnce(t *testing.T) {
	r := &recorder{synced: make(chan struct{}, 10)}
	q, stop := run(t, Options{Quiet: 200 * time.Millisecond, Max: 10 * time.Second}, r)
	defer stop()
	for _, k := range []string{"b", "a", "b", "c"} {
		q.Add(k)
		time.Sleep(20 * time.Millisecond)
	}
	wait(t, r)
	select {
	case <-r.synced:
		t.Errorf("a second sync for one burst: %v", r.batches)
	case <-time.After(500 * time.Millisecond):
	}
	if want := [][]string{{"a", "b", "c"}}; !slices.EqualFunc(r.batches, want, slices.Equal) {
		t.Errorf("batches = %v, want %v", r.batches, want)
	}
}

func TestChurnCannotHoldASyncBackLongerThanMax(t *testing.T) {
	r := &recorder{synced: make(chan struct{}, 10)}
	q, stop := run(t, Options{Quiet: 200 * time.Millisecond, Max: 500 * time.Millisecond}, r)
	defer stop()
	start := time.Now()
	churn, done := time.NewTicker(50*time.Millisecond), time.After(3*time.Second)
	defer churn.Stop()
	for synced := false; !synced; {
		select {
		case <-churn.C:
			q.Add("a")
		case <-r.synced:
			synced = true
		case <-done:
			t.Fatal("constant churn held the sync back for 3 s; Max is 500 ms")
		}
	}
	t.Logf("first sync %v after the churn began", time.Since(start))
}

func TestAFailedSyncIsRetriedWithBackoffUntilItSucceeds(t *testing.T) {
	r := &recorder{synced: make(chan struct{}, 10), fail: 2}
	var errs []error
	var mu sync.Mutex
	q, stop := run(t, Options{Quiet: time.Millisecond, RetryBase: 50 * time.Millisecond, RetryMax: time.Second, OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}, r)
	defer stop()
	q.Add("a")
	wait(t, r)
	first := time.Now()
	wait(t, r)
	second := time.Now()
	wait(t, r)
	third := time.Now()
	if want := [][]string{{"a"}, {"retry"}, {"retry"}}; !slices.EqualFunc(r.batches, want, slices.Equal) {
		t.Errorf("batches = %v, want %v", r.batches, want)
	}
	// The second retry waits twice the first.
	if d1, d2 := second.Sub(first), third.Sub(second); d1 < 40*time.Millisecond || d2 < 90*time.Millisecond {
		t.Errorf("retries after %v and %v, want ≥ 50 ms then ≥ 100 ms", d1, d2)
	}
	select {
	case <-r.synced:
		t.Errorf("retried after success: %v", r.batches)
	case <-time.After(300 * time.Millisecond):
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 2 {
		t.Errorf("OnError heard %d failures, want 2", len(errs))
	}
}

func TestAPanicInASyncIsAFailureRetried(t *testing.T) {
	synced := make(chan struct{}, 10)
	calls := 0
	q := New[string](Options{Quiet: time.Millisecond, RetryBase: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = q.Run(ctx, "retry", func(context.Context, []string) error {
			calls++
			synced <- struct{}{}
			if calls == 1 {
				panic("boom")
			}
			return nil
		})
	}()
	q.Add("a")
	for range 2 {
		select {
		case <-synced:
		case <-time.After(10 * time.Second):
			t.Fatal("the panic was not retried")
		}
	}
}
