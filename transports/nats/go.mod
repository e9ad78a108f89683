module github.com/kombu-go/kombu/transports/nats

go 1.25.0

replace github.com/kombu-go/kombu => ../..

require (
	github.com/kombu-go/kombu v0.0.0-00010101000000-000000000000
	github.com/nats-io/nats.go v1.50.0
)

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/nats-io/nkeys v0.4.15 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	golang.org/x/crypto v0.49.0 // indirect
	golang.org/x/sys v0.42.0 // indirect
)
