package main

import (
	"context"
	"encoding/base64"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	_ "github.com/kombu-go/kombu/transports/mongodb"
	"github.com/kombu-go/kombu/transports/mongodb/mongotest"
)

// benchMongoDB measures MongoDB on FerretDB v1.24 (on SQLite), built and
// started as a child process as the transport's tests start it. The bare
// client is the MongoDB Go driver making the transport's calls on Kombu's
// messages collection: an insert per publish; per up to 100 messages
// consumed (the prefetch of the tuned consumer) a find of the queue's
// first documents (by priority, then _id), the insert of their leased
// copies and the originals' deletes by _id (eight at a time), and for
// their acks one delete command holding a delete by _id per copy (the
// transport's batched acks); a publish reads the exchange's bindings first, as the
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
	byAge := bson.D{{Key: "priority", Value: 1}, {Key: "_id", Value: 1}}
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
			for count > 0 {
				// The transport's batch take: the first documents, their
				// leased copies, the originals' deletes; then the copies'
				// deletes, as the acks.
				cur, err := messages.Find(ctx, bson.D{{Key: "queue", Value: bareQueue}}, options.Find().SetSort(byAge).SetLimit(int64(min(count, tunedPrefetch))))
				if err != nil {
					return err
				}
				var ms []doc
				if err := cur.All(ctx, &ms); err != nil {
					return err
				}
				if len(ms) == 0 {
					return errors.New("the bare queue is empty")
				}
				copies := make([]any, len(ms))
				ids := make([]bson.ObjectID, len(ms))
				for i, m := range ms {
					copies[i] = doc{ID: bson.NewObjectID(), Payload: m.Payload, Queue: "kombu-go:taken:" + bareQueue, Priority: m.Priority,
						Original: m.ID, Lease: time.Now().Add(time.Minute)}
					ids[i] = m.ID
				}
				if _, err := messages.InsertMany(ctx, copies, options.InsertMany().SetOrdered(false)); err != nil {
					return err
				}
				// The originals' deletes, eight at a time.
				var g errgroup.Group
				g.SetLimit(8)
				for _, id := range ids {
					g.Go(func() error {
						_, err := messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
						return err
					})
				}
				if err := g.Wait(); err != nil {
					return err
				}
				acks := make([]mongo.WriteModel, len(ms))
				for i, m := range ms {
					b, err := base64.StdEncoding.DecodeString(m.Payload)
					if err != nil {
						return err
					}
					if err := decode(b); err != nil {
						return err
					}
					acks[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: copies[i].(doc).ID}})
				}
				// The acks, as the transport batches them: one delete
				// command with a delete by _id per copy.
				if _, err := messages.BulkWrite(ctx, acks, options.BulkWrite().SetOrdered(false)); err != nil {
					return err
				}
				count -= len(ms)
			}
			return nil
		},
		pyURL:     "mongodb://" + srv.Addr + "/" + db,
		pyOpts:    `{"polling_interval": 0.05}`,
		pyLabel:   "pymongo",
		pyImports: "kombu.transport.mongodb, pymongo",
		// FerretDB on SQLite scans the collection for every sorted find:
		// a few hundred messages a round keep a consume round in minutes.
		chunk: 25, scale: 40, pyDepth: true,
		note: "FerretDB on SQLite reads a sorted find by scanning the collection; Python Kombu 5.2 takes with one findAndModify (remove) a message, kombu-go takes up to its prefetch's room with a find, an insert of the leased copies and a delete by _id per original, and acks in batches (one delete command, a delete by _id per copy), so that a consumer's death loses nothing",
	})
}
