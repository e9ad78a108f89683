// Package kafkatest holds the tests of package kafka that run on kfake,
// franz-go's Kafka cluster in process. It is a module of its own because
// the Go module proxy serves kfake only at a version that needs go 1.26,
// while package kafka keeps the go line its client needs.
package kafkatest
