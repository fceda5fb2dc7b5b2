// Command bigbin is a large Go program (many dependencies) used by
// ctxwatch's benchmark to time attaching probes to a big binary.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

type traceKey struct{}

var sink context.Context

func main() {
	if len(os.Args) > 5 { // never: keeps every package linked
		cfg, _ := config.LoadDefaultConfig(context.Background())
		_ = sts.NewFromConfig(cfg)
		_, _ = azidentity.NewDefaultAzureCredential(nil)
		_, _ = grpc.NewClient("localhost:1")
		rc := &rest.Config{Host: "localhost"}
		cs, _ := kubernetes.NewForConfig(rc)
		_ = informers.NewSharedInformerFactory(cs, time.Minute)
		_, _ = dynamic.NewForConfig(rc)
		_, _ = discovery.NewDiscoveryClientForConfig(rc)
		_, _ = clientcmd.BuildConfigFromFlags("", "")
	}
	// Run until killed, using contexts now and then.
	for i := 0; ; i++ {
		ctx := context.WithValue(context.Background(), traceKey{}, i)
		c, cancel := context.WithCancel(ctx)
		sink = c
		cancel()
		time.Sleep(10 * time.Millisecond)
		if i == -1 {
			fmt.Println(sink)
		}
	}
}
