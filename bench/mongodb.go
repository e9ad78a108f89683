package main

import (
	"context"
	"encoding/base64"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	_ "github.com/kombu-go/kombu/transports/mongodb"
	"github.com/kombu-go/kombu/transports/mongodb/mongotest"
)

// benchMongoDB measures MongoDB on FerretDB v1.24 (on SQLite), built and
// started as a child process as the transport's tests start it. The bare
// client is the MongoDB Go driver making the transport's calls on Kombu's
// messages collection: an insert per publish; per message consumed a
// find of the queue's first document (by priority, then _id), the insert
// of its leased copy, the delete of the original and, as the ack, the
// copy's delete; a publish reads the exchange's bindings first, as the
// transport (and Kombu) do. Python Kombu (pymongo) runs on the same database.
func benchMongoDB(ctx context.Context, tab *table) error {
	srv, err := mongotest.Start(ctx)
	if err != nil {
		return err
	}
	defer srv.Stop()
	const db = "kombu_go_bench"
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + srv.Addr + "/" + db))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	messages := client.Database(db).Collection("messages")
	routing := client.Database(db).Collection("messages.routing")
	const bareQueue = "kombu-go-bench.bare"
	first := options.FindOne().SetSort(bson.D{{Key: "priority", Value: 1}, {Key: "_id", Value: 1}})
	type doc struct {
		ID       bson.ObjectID `bson:"_id"`
		Payload  string        `bson:"payload"`
		Queue    string        `bson:"queue"`
		Priority int           `bson:"priority"`
		Original bson.ObjectID `bson:"kombu_go_id,omitempty"`
		Lease    time.Time     `bson:"kombu_go_lease,omitempty"`
	}
	return benchEmulated(ctx, tab, emulated{
		url:       "mongodb://" + srv.Addr + "/" + db + "?polling_interval=0.05",
		bareLabel: "mongo-driver, same calls",
		barePurge: func() error {
			_, err := messages.DeleteMany(ctx, bson.D{{Key: "queue", Value: bareQueue}})
			return err
		},
		barePublish: func(count int) error {
			for range count {
				// The exchange's bindings, as Kombu's publish and the
				// transport's read them for every message.
				cur, err := routing.Find(ctx, bson.D{{Key: "exchange", Value: benchExchange}})
				if err != nil {
					return err
				}
				var bindings []bson.M
				if err := cur.All(ctx, &bindings); err != nil {
					return err
				}
				body, err := encode()
				if err != nil {
					return err
				}
				if _, err := messages.InsertOne(ctx, bson.D{{Key: "payload", Value: base64.StdEncoding.EncodeToString(body)},
					{Key: "queue", Value: bareQueue}, {Key: "priority", Value: 9}}); err != nil {
					return err
				}
			}
			return nil
		},
		bareConsume: func(count int) error {
			for range count {
				var m doc
				if err := messages.FindOne(ctx, bson.D{{Key: "queue", Value: bareQueue}}, first).Decode(&m); err != nil {
					if errors.Is(err, mongo.ErrNoDocuments) {
						return errors.New("the bare queue is empty")
					}
					return err
				}
				taken := doc{ID: bson.NewObjectID(), Payload: m.Payload, Queue: "kombu-go:taken:" + bareQueue, Priority: m.Priority,
					Original: m.ID, Lease: time.Now().Add(time.Minute)}
				if _, err := messages.InsertOne(ctx, taken); err != nil {
					return err
				}
				if _, err := messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: m.ID}}); err != nil {
					return err
				}
				b, err := base64.StdEncoding.DecodeString(m.Payload)
				if err != nil {
					return err
				}
				if err := decode(b); err != nil {
					return err
				}
				if _, err := messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: taken.ID}}); err != nil {
					return err
				}
			}
			return nil
		},
		pyURL:     "mongodb://" + srv.Addr + "/" + db,
		pyOpts:    `{"polling_interval": 0.05}`,
		pyLabel:   "pymongo",
		pyImports: "kombu.transport.mongodb, pymongo",
		// FerretDB on SQLite scans the collection for every sorted find:
		// a few hundred messages a round keep a consume round in minutes.
		chunk: 25, scale: 40,
		note: "FerretDB on SQLite reads a sorted find by scanning the collection; Python Kombu 5.2 takes with one findAndModify (remove), kombu-go with four requests (find, insert of the leased copy, delete, and the copy's delete as the ack) so that a consumer's death loses nothing",
	})
}
