package filesystem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Bindings live as Kombu 5.3 keeps them: control_folder/<exchange>.exchange
// holds the exchange's table as a JSON list of [routing_key, pattern,
// queue] rows, newest first, read under a shared flock and changed under an
// exclusive one, in place (Python locks the file it opened: a file renamed
// over it would escape its lock). Kombu 5.2 keeps bindings in the memory of
// each process instead, so a 5.2 publisher routes only through bindings it
// made itself.

const exchangeSuffix = ".exchange"

func (s *store) tablePath(exchange string) string {
	return filepath.Join(s.o.control, exchange+exchangeSuffix)
}

// Bindings reads the exchange's table.
func (s *store) Bindings(ctx context.Context, exchange string) ([]virtual.Binding, error) {
	if err := checkName("exchange", exchange); err != nil {
		return nil, err
	}
	path := s.tablePath(exchange)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := lock(f, lockShared); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return readTable(f, path)
}

// readTable parses a table file from its start.
func readTable(f *os.File, path string) ([]virtual.Binding, error) {
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, nil // made by Kombu's "wb" open, not yet written
	}
	var rows [][]string
	if err := json.Unmarshal(data, &rows); err != nil {
		return nil, fmt.Errorf("binding table %s is not a JSON list of [routing_key, pattern, queue] rows: %w", path, err)
	}
	out := make([]virtual.Binding, 0, len(rows))
	for _, r := range rows {
		if len(r) != 3 {
			return nil, fmt.Errorf("binding table %s: a row %q is not [routing_key, pattern, queue]", path, r)
		}
		out = append(out, virtual.Binding{RoutingKey: r[0], Pattern: r[1], Queue: r[2]})
	}
	return out, nil
}

// changeTable applies change to the exchange's table under an exclusive
// lock and writes it back if change reports a change.
func (s *store) changeTable(exchange string, create bool, change func([]virtual.Binding) ([]virtual.Binding, bool)) error {
	if err := checkName("exchange", exchange); err != nil {
		return err
	}
	path := s.tablePath(exchange)
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o666)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lock(f, lockExclusive); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	rows, err := readTable(f, path)
	if err != nil {
		return err
	}
	rows, changed := change(rows)
	if !changed {
		return nil
	}
	data := appendTable(nil, rows)
	if _, err := f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// appendTable writes rows as Kombu's dumps writes its list of
// exchange_queue_t tuples.
func appendTable(b []byte, rows []virtual.Binding) []byte {
	b = append(b, '[')
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',', ' ')
		}
		b = append(b, '[')
		b = virtual.AppendPyString(b, r.RoutingKey)
		b = append(b, ',', ' ')
		b = virtual.AppendPyString(b, r.Pattern)
		b = append(b, ',', ' ')
		b = virtual.AppendPyString(b, r.Queue)
		b = append(b, ']')
	}
	return append(b, ']')
}

// Bind inserts the row at the front of the table, as Kombu's _queue_bind
// does, unless the table has it.
func (s *store) Bind(ctx context.Context, exchange string, b virtual.Binding) error {
	if err := checkName("queue", b.Queue); err != nil {
		return err
	}
	return s.changeTable(exchange, true, func(rows []virtual.Binding) ([]virtual.Binding, bool) {
		if slices.Contains(rows, b) {
			return rows, false
		}
		return slices.Insert(rows, 0, b), true
	})
}

// Unbind removes the rows with the binding's routing key and queue.
func (s *store) Unbind(ctx context.Context, exchange string, b virtual.Binding) error {
	return s.changeTable(exchange, false, func(rows []virtual.Binding) ([]virtual.Binding, bool) {
		n := len(rows)
		rows = slices.DeleteFunc(rows, func(r virtual.Binding) bool { return r.RoutingKey == b.RoutingKey && r.Queue == b.Queue })
		return rows, len(rows) != n
	})
}

// DeleteExchange removes the exchange's table.
func (s *store) DeleteExchange(ctx context.Context, exchange string) error {
	if err := checkName("exchange", exchange); err != nil {
		return err
	}
	err := os.Remove(s.tablePath(exchange))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// unbindEverywhere removes the queue's rows from every table. Kombu 5.5
// removes none (its main branch removes the deleting channel's own); rows
// left behind would keep routing messages to a deleted queue, making it
// again.
func (s *store) unbindEverywhere(queue string) error {
	entries, err := os.ReadDir(s.o.control)
	if err != nil {
		return err
	}
	for _, e := range entries {
		exchange, ok := strings.CutSuffix(e.Name(), exchangeSuffix)
		if !ok || e.IsDir() || exchange == "" {
			continue
		}
		err := s.changeTable(exchange, false, func(rows []virtual.Binding) ([]virtual.Binding, bool) {
			n := len(rows)
			rows = slices.DeleteFunc(rows, func(r virtual.Binding) bool { return r.Queue == queue })
			return rows, len(rows) != n
		})
		if err != nil {
			return err
		}
	}
	return nil
}
