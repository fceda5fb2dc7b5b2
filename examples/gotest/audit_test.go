package gotest

import (
	"context"
	"sync"
	"testing"
)

func TestHandle(t *testing.T) {
	var wg sync.WaitGroup
	ctx := WithTrace(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736")
	Handle(ctx, &wg)
	wg.Wait()
}
