module github.com/kombu-go/kombu/transports/kafka

go 1.24.0

replace github.com/kombu-go/kombu => ../..

require (
	github.com/kombu-go/kombu v0.0.0
	github.com/twmb/franz-go v1.20.7
	github.com/twmb/franz-go/pkg/kadm v1.17.2
	github.com/twmb/franz-go/pkg/kmsg v1.12.0
)

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/pierrec/lz4/v4 v4.1.25 // indirect
	golang.org/x/crypto v0.48.0 // indirect
)
