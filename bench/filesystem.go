package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/filesystem"
)

// The filesystem workloads, in folders of the run's own under the system's
// temporary folder. Each SDK side has a folder of its own (a consumer held
// between its side's turns would otherwise take the other side's
// messages), Python Kombu uses the SDK defaults' folder.
//
// The bare client is what a hand-written folder queue does with the same
// care about half-written files as the SDK: write each message to a
// temporary file and rename it into place; take a file by renaming it
// into a folder of the consumer's, read it, decode it and delete it. It
// writes no Kombu envelope, takes no lock and keeps no order, so it shows
// what Kombu's layout and the SDK's bookkeeping cost on top of the file
// system's own work.

const filesystemChunk = 500 // messages per turn

func benchFilesystem(ctx context.Context, tab *table) error {
	root, err := os.MkdirTemp("", "kombu-go-bench-filesystem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	folder := func(name string) (string, error) {
		dir := filepath.Join(root, name)
		return dir, os.Mkdir(dir, 0o777)
	}
	defaultsDir, err := folder("defaults")
	if err != nil {
		return err
	}
	tunedDir, err := folder("tuned")
	if err != nil {
		return err
	}
	bareDir, err := folder("bare")
	if err != nil {
		return err
	}
	bareTaken, err := folder("bare-taken")
	if err != nil {
		return err
	}
	defaults, tuned, err := dialSides(ctx, "filesystem://"+defaultsDir, "filesystem://"+tunedDir)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	purge := func() error {
		return errors.Join(defaults.purge(ctx), tuned.purge(ctx), emptyFolder(bareDir))
	}

	seq := 0
	barePublish := func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			seq++
			tmp := filepath.Join(bareDir, fmt.Sprintf(".%d.tmp", seq))
			if err := os.WriteFile(tmp, body, 0o666); err != nil {
				return err
			}
			if err := os.Rename(tmp, filepath.Join(bareDir, fmt.Sprintf("%d.msg", seq))); err != nil {
				return err
			}
		}
		return nil
	}
	var listed []string // the bare consumer's listing of its folder
	bareConsume := func(count int) error {
		for done := 0; done < count; {
			if len(listed) == 0 {
				if listed, err = names(bareDir); err != nil {
					return err
				}
				if len(listed) == 0 {
					return fmt.Errorf("the bare folder is empty after %d of %d messages", done, count)
				}
			}
			name := listed[0]
			listed = listed[1:]
			taken := filepath.Join(bareTaken, name)
			if err := os.Rename(filepath.Join(bareDir, name), taken); err != nil {
				continue // a temporary file, or gone
			}
			body, err := os.ReadFile(taken)
			if err != nil {
				return err
			}
			if err := decode(body); err != nil {
				return err
			}
			if err := os.Remove(taken); err != nil {
				return err
			}
			done++
		}
		return nil
	}
	python := func(workload string, prepare func(int) error) func(int) (pythonResult, error) {
		return pythonSide("filesystem://"+defaultsDir, workload, "", prepare)
	}

	err = tab.add(workload{
		name: "publish, one by one", chunk: filesystemChunk, setup: only(purge),
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "os.WriteFile and rename", barePublish},
		},
		python: python("publish-unconfirmed", func(int) error { return purge() }),
	})
	if err != nil {
		return err
	}

	// Consume: each round fills the folders (not timed), then the
	// consumers, held between their turns (see turn), take turns.
	consumeDefaults := sdkConsumer(ctx, sdkDefaults, defaults.conn)
	consumeTuned := sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch))
	err = tab.add(workload{
		name: "consume, ack each", chunk: filesystemChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			fill := tab.cfg.n + filesystemChunk + tunedPrefetch
			if err := errors.Join(publishBatched(ctx, defaults.producer)(fill), publishBatched(ctx, tuned.producer)(fill), barePublish(fill)); err != nil {
				return nil, err
			}
			listed = nil
			return beginAll(consumeDefaults, consumeTuned)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumeDefaults.take)},
			{sdkTuned, "prefetch 100", tuned.explained(ctx, consumeTuned.take)},
			{bare, "rename, read and remove", bareConsume},
		},
		python: python("consume", func(n int) error {
			return errors.Join(purge(), publishBatched(ctx, defaults.producer)(n))
		}),
	})
	if err != nil {
		return err
	}
	return errors.Join(defaults.remove(ctx), tuned.remove(ctx))
}

// names lists a folder's file names.
func names(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// emptyFolder removes every file in a folder.
func emptyFolder(dir string) error {
	ns, err := names(dir)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
