module github.com/kombu-go/kombu

go 1.24.0

require google.golang.org/protobuf v1.36.12

require github.com/rabbitmq/amqp091-go v1.16.0

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/redis/go-redis/v9 v9.22.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)
