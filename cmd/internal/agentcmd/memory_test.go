package agentcmd

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestReleaseStartupMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		readyAfter int32 // calls to ready before it reports ready; -1: never
		cancel     bool
		wantFreed  int32
	}{
		{name: "ready at once", readyAfter: 0, wantFreed: 1},
		{name: "ready after a few polls", readyAfter: 3, wantFreed: 1},
		{name: "never ready, stopped", readyAfter: -1, cancel: true, wantFreed: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls, freed atomic.Int32
			ready := func(context.Context) error {
				n := calls.Add(1)
				if tc.readyAfter >= 0 && n > tc.readyAfter {
					return nil
				}
				if tc.cancel && n == 2 {
					cancel()
				}
				return errors.New("not ready")
			}
			done := make(chan error, 1)
			go func() { done <- releaseStartupMemory(ctx, ready, func() { freed.Add(1) }) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("releaseStartupMemory: %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("releaseStartupMemory did not return")
			}
			if got := freed.Load(); got != tc.wantFreed {
				t.Errorf("freed %d times, want %d", got, tc.wantFreed)
			}
		})
	}
}
