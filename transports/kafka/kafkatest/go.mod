module github.com/kombu-go/kombu/transports/kafka/kafkatest

go 1.26.0

replace (
	github.com/kombu-go/kombu => ../../..
	github.com/kombu-go/kombu/transports/kafka => ..
)

require (
	github.com/kombu-go/kombu v0.0.0
	github.com/kombu-go/kombu/transports/kafka v0.0.0
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kadm v1.18.0 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
	golang.org/x/crypto v0.51.0 // indirect
)
