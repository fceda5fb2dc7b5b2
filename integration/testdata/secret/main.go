// Command secret keeps a secret in its contexts, under keys that are not
// trace keys, while it does traced work that loses its trace: ctxwatch
// must report the breaks and never the secret. The secret is read from the
// file its first argument names, so that it is in no command line and in
// no output of this program.
//
// Without an argument it makes a secret of its own. It prints "ready",
// then for each line of standard input runs one unit of work under trace
// key "trace_id" (a plain string key: --trace-key string=trace_id), and
// exits at end of input.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
)

type secretKey struct{}

type credsKey struct{}

type creds struct {
	User  string
	Token string
}

// traceOf is small enough for the compiler to inline at every call: it is
// in the source but has no function of its own (--check-func main.traceOf).
func traceOf(ctx context.Context) string {
	s, _ := ctx.Value("trace_id").(string)
	return s
}

// withSecrets hides the secret in every shape a context value can take.
func withSecrets(ctx context.Context, secret string) context.Context {
	ctx = context.WithValue(ctx, "password", secret)                          // string key, string value
	ctx = context.WithValue(ctx, "session", []byte(secret))                   // string key, []byte value
	ctx = context.WithValue(ctx, secretKey{}, []byte(secret))                 // struct key, []byte value
	ctx = context.WithValue(ctx, credsKey{}, creds{User: "u", Token: secret}) // inside a struct value
	ctx = context.WithValue(ctx, secret, "the key is the secret")             // the secret as a string key
	return ctx
}

func handle(n int, secret string) (kept bool) {
	ctx := context.WithValue(context.Background(), "trace_id", fmt.Sprintf("5eed%028x", n+1))
	ctx = withSecrets(ctx, secret)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // kept: walks past every secret to the trace
		defer wg.Done()
		c, cancel := context.WithCancel(ctx)
		defer cancel()
		kept = traceOf(c) != ""
	}()
	go func() { // lost-at-spawn: its first check has secrets and no trace
		defer wg.Done()
		c, cancel := context.WithCancel(withSecrets(context.Background(), secret))
		defer cancel()
		_ = c
	}()
	go func() { // new-root: another trace, then the secrets on top
		defer wg.Done()
		c := context.WithValue(context.Background(), "trace_id", fmt.Sprintf("0de%029x", n+1))
		_ = withSecrets(c, secret)
	}()
	wg.Wait()
	return kept
}

func main() {
	// Without a file, a secret of its own (a target for --pid tests).
	secret := rand.Text()
	if len(os.Args) > 1 {
		data, err := os.ReadFile(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		secret = strings.TrimSpace(string(data))
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	n, kept := 0, 0
	for sc.Scan() {
		if handle(n, secret) {
			kept++
		}
		n++
	}
	fmt.Printf("secret: units %d kept %d\n", n, kept)
}
