// Command kfake runs kfake, franz-go's Kafka cluster in a process, for
// what cannot import it in process (make bench, whose module keeps an
// older go line than kfake needs). It prints the brokers' addresses,
// comma-separated, on one line, and runs until its standard input is
// closed.
//
//	go run ./cmd/kfake -brokers 3
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	brokers := flag.Int("brokers", 3, "brokers in the cluster")
	flag.Parse()
	c, err := kfake.NewCluster(kfake.NumBrokers(*brokers))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	fmt.Println(strings.Join(c.ListenAddrs(), ","))
	_, _ = io.Copy(io.Discard, os.Stdin)
	c.Close()
}
