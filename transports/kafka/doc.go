// Package kafka is Kombu's Kafka transport (kombu/transport/confluentkafka.py)
// for kombu-go, on franz-go.
package kafka
