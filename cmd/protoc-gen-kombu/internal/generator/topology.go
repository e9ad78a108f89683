package generator

import (
	"time"

	"google.golang.org/protobuf/compiler/protogen"

	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
)

// This file gives the model to tools that declare a proto file's topology
// at run time (package prototopology, for the kombu command's declare
// verb) instead of generating code for it: the same checks and defaults as
// the generated XTopology functions, as the option messages themselves.
// It stays in kombuv1's terms so that the plugin links no runtime
// (TestLinksNoRuntime); prototopology turns it into runtime values.

// ServiceModel is the topology of one service, in the order the generated
// XTopology function lists it.
type ServiceModel struct {
	Service   string              // the service's full proto name
	Exchanges []*kombuv1.Exchange // the service's own exchange first
	Queues    []QueueModel
}

// QueueModel is one queue: its settings merged over every declaration of
// its name (routing key and bindings cleared), its bindings with defaults
// applied, and its durations parsed.
type QueueModel struct {
	Decl                *kombuv1.Queue
	Bindings            []*kombuv1.Binding
	MessageTTL, Expires time.Duration
}

// FileModels checks file's kombu options as the plugin does and returns
// each service's topology, in file order.
func FileModels(file *protogen.File) ([]ServiceModel, error) {
	services, err := buildFile(file)
	if err != nil {
		return nil, err
	}
	out := make([]ServiceModel, 0, len(services))
	for _, s := range services {
		m := ServiceModel{Service: fullName(s), Exchanges: s.exchanges}
		for _, q := range s.queues {
			// checkQueue has parsed the durations already.
			ttl, _ := parseDuration("message_ttl", q.decl.GetMessageTtl())
			exp, _ := parseDuration("expires", q.decl.GetExpires())
			m.Queues = append(m.Queues, QueueModel{Decl: q.decl, Bindings: q.bindings, MessageTTL: ttl, Expires: exp})
		}
		out = append(out, m)
	}
	return out, nil
}
