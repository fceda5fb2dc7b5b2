// Command waiter is a target for attaching with --pid: it prints "ready",
// then for each line read from standard input runs one traced unit of work
// whose goroutine loses the trace, and exits at end of input. A line
// "exec PATH ARGS..." executes PATH in its place (same pid).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

type traceKey struct{}

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", n+1))
	_ = ctx
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // want:spawn lost-at-spawn
		defer wg.Done()
		c, cancel := context.WithCancel(context.Background()) // want:site lost-at-spawn
		defer cancel()
		_ = c
	}()
	wg.Wait()
}

func main() {
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	n := 0
	for sc.Scan() {
		if args, ok := strings.CutPrefix(sc.Text(), "exec "); ok {
			argv := strings.Fields(args)
			err := syscall.Exec(argv[0], argv, os.Environ())
			fmt.Fprintln(os.Stderr, "waiter: exec:", err)
			os.Exit(1)
		}
		handle(n)
		n++
		fmt.Println("done", n)
	}
}
