package kombu

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

func TestRetryIntervalsFollowKombu(t *testing.T) {
	// Kombu: fxrange(2, 30+2, 2, repeatlast=True) → 2, 4, … 30, 32, 32, …
	var p RetryPolicy
	var got []time.Duration
	for n := range 18 {
		got = append(got, p.Interval(n))
	}
	want := []time.Duration{2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 32, 32}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("intervals %v, want %v seconds", got, want)
		}
	}
	// ensure()'s defaults (1, 1, 1): 1, 2, 2, …
	p = RetryPolicy{IntervalStart: time.Second, IntervalStep: time.Second, IntervalMax: time.Second}
	if a, b, c := p.Interval(0), p.Interval(1), p.Interval(9); a != time.Second || b != 2*time.Second || c != 2*time.Second {
		t.Fatalf("ensure defaults: %v %v %v", a, b, c)
	}
	if d := p.Interval(1 << 62); d != 2*time.Second {
		t.Fatalf("huge n: %v", d)
	}
}

func TestRetryCyclesURLsAndWaitsOnlyAfterARound(t *testing.T) {
	lost := &OperationalError{Op: "connect", Err: transport.ErrClosed}
	var tried []int
	var waits []time.Duration
	policy := RetryPolicy{MaxRetries: 6, IntervalStart: time.Millisecond, IntervalStep: time.Millisecond, IntervalMax: time.Millisecond}
	err := retry(context.Background(), policy, 3, RoundRobin,
		func(_ context.Context, i int) error { tried = append(tried, i); return lost },
		func(_ error, _ int, wait time.Duration) { waits = append(waits, wait) })
	if !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if fmt.Sprint(tried) != "[0 1 2 0 1 2 0]" {
		t.Fatalf("tried %v, want three rounds over three URLs, then the first again", tried)
	}
	// No wait between URLs of a round; Kombu's interval after each full round.
	if fmt.Sprint(waits) != "[0s 0s 1ms 0s 0s 2ms]" {
		t.Fatalf("waits %v", waits)
	}
}

func TestRetryStopsOnWhatRetryingCannotFix(t *testing.T) {
	calls := 0
	err := retry(context.Background(), RetryPolicy{}, 2, RoundRobin, func(context.Context, int) error {
		calls++
		return fmt.Errorf("declare: %w", transport.ErrPrecondition)
	}, nil)
	if calls != 1 || !errors.Is(err, transport.ErrPrecondition) {
		t.Fatalf("%d calls, %v", calls, err)
	}
}

func TestRetryHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := retry(ctx, RetryPolicy{IntervalStart: time.Hour}, 1, RoundRobin, func(context.Context, int) error {
		return &OperationalError{Err: transport.ErrClosed}
	}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(begin) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(begin))
	}
}

func TestShuffleTriesEveryURLEachRound(t *testing.T) {
	seen := map[int]int{}
	_ = retry(context.Background(), RetryPolicy{MaxRetries: 8, IntervalStart: time.Microsecond}, 3, Shuffle,
		func(_ context.Context, i int) error { seen[i]++; return &OperationalError{Err: transport.ErrClosed} }, nil)
	if seen[0] != 3 || seen[1] != 3 || seen[2] != 3 {
		t.Fatalf("tries per URL %v, want 3 each over 3 rounds", seen)
	}
}

func TestEnsureRetriesRecoverableFailures(t *testing.T) {
	conn := testConnection(defaultCodecs)
	conn.logger = discardLogger()
	calls := 0
	err := conn.Ensure(context.Background(), RetryPolicy{MaxRetries: 5, IntervalStart: time.Millisecond}, func(context.Context) error {
		calls++
		if calls < 3 {
			return &OperationalError{Op: "declare", Err: fmt.Errorf("connection reset")}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("%v after %d calls, want success on the third", err, calls)
	}
	calls = 0
	err = conn.Ensure(context.Background(), RetryPolicy{MaxRetries: 5}, func(context.Context) error {
		calls++
		return fmt.Errorf("declare: %w", transport.ErrPrecondition)
	})
	if calls != 1 || !errors.Is(err, transport.ErrPrecondition) {
		t.Fatalf("a declaration conflict was retried: %d calls, %v", calls, err)
	}
}

func TestSentinelListIsOneURL(t *testing.T) {
	urls, err := transport.ParseList("sentinel://h1:26379;sentinel://h2:26380?master_name=m;sentinel://h3")
	if err != nil {
		t.Fatal(err)
	}
	merged := mergeSentinels(urls)
	if len(merged) != 1 || merged[0].Host != "h1" ||
		fmt.Sprint(merged[0].Query["sentinel"]) != "[h2:26380 h3:26379]" || merged[0].Query.Get("master_name") != "m" {
		t.Fatalf("merged to %d URLs: %+v", len(merged), merged[0])
	}
	mixed, _ := transport.ParseList("amqp://a//;amqp://b//")
	if len(mergeSentinels(mixed)) != 2 {
		t.Fatal("a failover list of brokers was merged")
	}
}

func TestDialMakesOneAttemptPerURLByDefault(t *testing.T) {
	// A single URL: one attempt, even for a failure retrying could fix.
	conn := testConnection(defaultCodecs)
	conn.logger = discardLogger()
	calls := 0
	policy := NoRetry()
	_ = retry(context.Background(), policy, 1, RoundRobin, func(context.Context, int) error {
		calls++
		return &OperationalError{Err: transport.ErrClosed}
	}, nil)
	if calls != 1 {
		t.Fatalf("%d attempts with NoRetry", calls)
	}
}

func TestRetryOutlastsAttemptTimeouts(t *testing.T) {
	calls := 0
	err := retry(context.Background(), RetryPolicy{MaxRetries: 5, IntervalStart: time.Millisecond}, 1, RoundRobin,
		func(context.Context, int) error {
			calls++
			if calls < 3 {
				return &OperationalError{Op: "connect", Err: fmt.Errorf("dial: %w", context.DeadlineExceeded)}
			}
			return nil
		}, nil)
	if err != nil || calls != 3 {
		t.Fatalf("%v after %d calls: a connect timeout must be retried while the caller's context lives", err, calls)
	}
}
