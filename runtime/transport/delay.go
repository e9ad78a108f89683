package transport

import "time"

// MaxDelay is the longest Publishing.Delay: 2^28 − 1 seconds (about 8.5
// years), the most Kombu 5.5's native delayed-delivery topology on RabbitMQ
// can hold, since it spells the delay in 28 bits of whole seconds. Every
// driver keeps to it, so that a delay valid on one transport is valid on
// all.
const MaxDelay = (1<<28 - 1) * time.Second
