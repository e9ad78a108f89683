// Command ferretdb runs FerretDB embedded (github.com/FerretDB/FerretDB/ferretdb)
// on SQLite for package mongotest, which builds it without the race detector
// and runs it as a child process for the tests and make bench.
//
//	ferretdb LISTEN_ADDR SQLITE_DIR
//
// SIGTERM or SIGINT stop it as a server is stopped: its listener and
// connections closed and its databases closed before it exits.
package main

import (
	"context"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: ferretdb LISTEN_ADDR SQLITE_DIR")
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: os.Args[1]},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler:   "sqlite",
		SQLiteURL: "file:" + os.Args[2] + "/",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	_ = f.Run(ctx)
}
