package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Toxiproxy is an in-process Toxiproxy server: proxies and toxics are
// driven through its Go API, with no HTTP server and no external binary.
type Toxiproxy struct {
	srv *toxiproxy.ApiServer
}

// NewToxiproxy starts an in-process Toxiproxy whose own logs are discarded.
func NewToxiproxy() *Toxiproxy {
	return &Toxiproxy{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Proxy is a TCP proxy to one upstream.
type Proxy struct {
	p  *toxiproxy.Proxy
	tp *Toxiproxy

	mu     sync.Mutex
	toxics []string
}

// Proxy starts a proxy named name, listening on a free port of 127.0.0.1,
// to upstream (host:port).
func (tp *Toxiproxy) Proxy(name, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(tp.srv, name, "127.0.0.1:0", upstream)
	if err := tp.srv.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("toxiproxy: start proxy %s: %w", name, err)
	}
	return &Proxy{p: p, tp: tp}, nil
}

// Addr is the proxy's listen address, host:port.
func (p *Proxy) Addr() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Listen
}

// Port is the proxy's listen port.
func (p *Proxy) Port() string {
	a := p.Addr()
	return a[strings.LastIndexByte(a, ':')+1:]
}

// Stream is the direction a toxic applies to: upstream is client → broker.
type Stream string

const (
	Upstream   Stream = "upstream"
	Downstream Stream = "downstream"
)

// AddToxic adds a toxic (reset_peer, timeout, latency, slow_close, ...)
// with toxicity 1.
func (p *Proxy) AddToxic(name, kind string, stream Stream, attrs map[string]any) error {
	body, err := json.Marshal(map[string]any{
		"name": name, "type": kind, "stream": string(stream), "toxicity": 1.0, "attributes": attrs,
	})
	if err != nil {
		return err
	}
	if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		return fmt.Errorf("toxiproxy: add toxic %s: %w", name, err)
	}
	p.mu.Lock()
	p.toxics = append(p.toxics, name)
	p.mu.Unlock()
	return nil
}

// RemoveToxic removes a toxic.
func (p *Proxy) RemoveToxic(name string) error {
	p.mu.Lock()
	for i, n := range p.toxics {
		if n == name {
			p.toxics = append(p.toxics[:i], p.toxics[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	if err := p.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		return fmt.Errorf("toxiproxy: remove toxic %s: %w", name, err)
	}
	return nil
}

// Reset removes every toxic.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.toxics = nil
	p.mu.Unlock()
	p.p.Toxics.ResetToxics(context.Background())
}

// Cut closes every connection through the proxy (both sides, a FIN each)
// and starts listening again on the same address.
func (p *Proxy) Cut() error {
	p.p.Stop()
	return p.p.Start()
}

// Close removes the toxics, stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.Reset()
	p.p.Stop()
	_ = p.tp.srv.Collection.Remove(p.p.Name)
}
