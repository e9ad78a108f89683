module github.com/kombu-go/kombu

go 1.24.0

require google.golang.org/protobuf v1.36.12

require github.com/rabbitmq/amqp091-go v1.16.0

require (
	github.com/andybalholm/brotli v1.3.0
	github.com/dsnet/compress v0.0.2-0.20230904184137-39efe44ab707
	github.com/go-json-experiment/json v0.0.0-20250725192818-e39067aee2d2
	github.com/klauspost/compress v1.19.2
	github.com/redis/go-redis/v9 v9.22.0
	github.com/ulikunitz/xz v0.5.17
	github.com/vmihailenco/msgpack/v5 v5.4.1
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)
