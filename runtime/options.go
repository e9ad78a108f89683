package kombu

import "time"

// Options follow one pattern throughout the package, connect-go's: each
// call that takes options has an option interface with an unexported
// method, so only this package can implement it, and an option whose
// meaning is shared implements every interface where it applies:
//
//   - a PublishOption is also a ProducerOption: given to NewProducer or
//     Producer.With it sets the producer's default for every publish;
//   - a ReceiveOption (WithAccept, WithAutoAck) applies wherever messages are
//     received: NewConsumer and Queue.Get;
//   - a DeleteOption qualifies Queue.Delete and Exchange.Delete alike;
//   - a DialOption is also a PoolOption: given to NewPools it configures
//     every connection the pools dial;
//   - a PublishOption and a ReceiveOption are also SimpleOptions: given to
//     NewSimpleQueue or NewSimpleBuffer, the first sets the default of
//     every Put, the second how Get receives;
//   - a ConsumeOption (WithPrefetch, WithShutdownTimeout) applies wherever
//     a queue is consumed: NewConsumer and NewShovel.

// DialOption configures Dial. Passed to NewPools, it configures every
// connection the pools dial.
type DialOption interface {
	PoolOption
	applyDial(*dialConfig)
}

// ProducerOption configures NewProducer and Producer.With. Every
// PublishOption is one, setting the producer's default.
type ProducerOption interface{ applyProducer(*Producer) }

// PublishOption sets how one message is published. Passed to NewProducer
// or Producer.With, it sets the producer's default instead; passed to
// NewSimpleQueue or NewSimpleBuffer, the default of every Put.
type PublishOption interface {
	ProducerOption
	SimpleOption
	applyPublish(*publishConfig)
}

// ConsumerOption configures NewConsumer.
type ConsumerOption interface{ applyConsumer(*consumerConfig) }

// ShovelOption configures NewShovel.
type ShovelOption interface{ applyShovel(*shovelConfig) }

// ConsumeOption applies wherever a queue is consumed: it is a
// ConsumerOption and a ShovelOption.
type ConsumeOption interface {
	ConsumerOption
	ShovelOption
}

// GetOption qualifies Queue.Get.
type GetOption interface{ applyGet(*getConfig) }

// ReceiveOption applies wherever messages are received: it is a
// ConsumerOption, a GetOption and a SimpleOption.
type ReceiveOption interface {
	ConsumerOption
	GetOption
	SimpleOption
}

// DeleteOption qualifies Queue.Delete and Exchange.Delete.
type DeleteOption interface{ applyDelete(*deleteConfig) }

// WorkerOption configures NewWorker.
type WorkerOption interface{ applyWorker(*Worker) }

// PoolOption configures NewPools. Every DialOption is one.
type PoolOption interface{ applyPool(*poolsConfig) }

// SimpleOption configures NewSimpleQueue and NewSimpleBuffer. Every
// PublishOption and ReceiveOption is one.
type SimpleOption interface{ applySimple(*simpleConfig) }

// The adapters below turn a function into the option it applies to.

type dialOption func(*dialConfig)

func (o dialOption) applyDial(c *dialConfig)  { o(c) }
func (o dialOption) applyPool(c *poolsConfig) { c.dial = append(c.dial, o) }

type producerOption func(*Producer)

func (o producerOption) applyProducer(p *Producer) { o(p) }

type publishOption func(*publishConfig)

func (o publishOption) applyPublish(c *publishConfig) { o(c) }
func (o publishOption) applyProducer(p *Producer)     { o(&p.defaults) }
func (o publishOption) applySimple(c *simpleConfig)   { c.publish = append(c.publish, o) }

type consumerOption func(*consumerConfig)

func (o consumerOption) applyConsumer(c *consumerConfig) { o(c) }

// consumeOption sets what consumers and shovels share.
type consumeOption func(*consumeConfig)

func (o consumeOption) applyConsumer(c *consumerConfig) { o(&c.consumeConfig) }
func (o consumeOption) applyShovel(c *shovelConfig)     { o(&c.consumeConfig) }

// consumeConfig is what a consumer and a shovel are both told.
type consumeConfig struct {
	prefetch        int
	shutdownTimeout time.Duration
}

type shovelOption func(*shovelConfig)

func (o shovelOption) applyShovel(c *shovelConfig) { o(c) }

// receiveOption sets what consumers and Get share.
type receiveOption func(*receiveConfig)

func (o receiveOption) applyConsumer(c *consumerConfig) { o(&c.receiveConfig) }
func (o receiveOption) applyGet(c *getConfig)           { o(&c.receiveConfig) }
func (o receiveOption) applySimple(c *simpleConfig)     { o(&c.receiveConfig) }

// receiveConfig is what a consumer and Get are both told.
type receiveConfig struct {
	accept  []string
	autoAck bool
}

type deleteOption func(*deleteConfig)

func (o deleteOption) applyDelete(c *deleteConfig) { o(c) }

type workerOption func(*Worker)

func (o workerOption) applyWorker(w *Worker) { o(w) }

type poolOption func(*poolsConfig)

func (o poolOption) applyPool(c *poolsConfig) { o(c) }

type simpleOption func(*simpleConfig)

func (o simpleOption) applySimple(c *simpleConfig) { o(c) }
