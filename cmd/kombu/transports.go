package main

// Every transport the project has, registered for its URL schemes. Adding a
// transport to the command is one import line here (and a replace line in
// go.mod for a transport with a module of its own). memory:// is left out
// on purpose: its broker lives inside one process, so a command run would
// only ever see its own, empty, broker.
import (
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/azurequeues"
	_ "github.com/kombu-go/kombu/transports/filesystem"
	_ "github.com/kombu-go/kombu/transports/gcpubsub"
	_ "github.com/kombu-go/kombu/transports/mongodb"
	_ "github.com/kombu-go/kombu/transports/redis"
	_ "github.com/kombu-go/kombu/transports/sqldb"
	_ "github.com/kombu-go/kombu/transports/sqs"
)
