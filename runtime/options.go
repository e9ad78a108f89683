package kombu

// Options follow one pattern throughout the package, connect-go's: each
// call that takes options has an option interface with an unexported
// method, so only this package can implement it, and an option whose
// meaning is shared implements every interface where it applies:
//
//   - a PublishOption is also a ProducerOption: given to NewProducer or
//     Producer.With it sets the producer's default for every publish;
//   - a ReceiveOption (WithAccept, WithAutoAck) applies wherever messages are
//     received: NewConsumer and Queue.Get;
//   - a DeleteOption qualifies Queue.Delete and Exchange.Delete alike.

// DialOption configures Dial.
type DialOption interface{ applyDial(*dialConfig) }

// ProducerOption configures NewProducer and Producer.With. Every
// PublishOption is one, setting the producer's default.
type ProducerOption interface{ applyProducer(*Producer) }

// PublishOption sets how one message is published. Passed to NewProducer
// or Producer.With, it sets the producer's default instead.
type PublishOption interface {
	ProducerOption
	applyPublish(*publishConfig)
}

// ConsumerOption configures NewConsumer.
type ConsumerOption interface{ applyConsumer(*consumerConfig) }

// GetOption qualifies Queue.Get.
type GetOption interface{ applyGet(*getConfig) }

// ReceiveOption applies wherever messages are received: it is both a
// ConsumerOption and a GetOption.
type ReceiveOption interface {
	ConsumerOption
	GetOption
}

// DeleteOption qualifies Queue.Delete and Exchange.Delete.
type DeleteOption interface{ applyDelete(*deleteConfig) }

// WorkerOption configures NewWorker.
type WorkerOption interface{ applyWorker(*Worker) }

// The adapters below turn a function into the option it applies to.

type dialOption func(*dialConfig)

func (o dialOption) applyDial(c *dialConfig) { o(c) }

type producerOption func(*Producer)

func (o producerOption) applyProducer(p *Producer) { o(p) }

type publishOption func(*publishConfig)

func (o publishOption) applyPublish(c *publishConfig) { o(c) }
func (o publishOption) applyProducer(p *Producer)     { o(&p.defaults) }

type consumerOption func(*consumerConfig)

func (o consumerOption) applyConsumer(c *consumerConfig) { o(c) }

// receiveOption sets what consumers and Get share.
type receiveOption func(*receiveConfig)

func (o receiveOption) applyConsumer(c *consumerConfig) { o(&c.receiveConfig) }
func (o receiveOption) applyGet(c *getConfig)           { o(&c.receiveConfig) }

// receiveConfig is what a consumer and Get are both told.
type receiveConfig struct {
	accept  []string
	autoAck bool
}

type deleteOption func(*deleteConfig)

func (o deleteOption) applyDelete(c *deleteConfig) { o(c) }

type workerOption func(*Worker)

func (o workerOption) applyWorker(w *Worker) { o(w) }
