package kafka

import (
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka cannot rewrite a record to mark it redelivered, as Kombu's
// restore marks an envelope. Instead every commit carries, in the
// partition's commit metadata (a string Kafka keeps beside the offset),
// the offsets at or past the committed one that this member handed to a
// consumer. The member the partition goes to next (after a close, a
// rebalance or a crash after the commit) reads it at assignment and
// delivers those records marked redelivered.
const metaPrefix = "kombu-delivered:"

// maxMeta keeps the metadata under Kafka's offset.metadata.max.bytes
// (4096 by default): longer lists collapse to one range.
const maxMeta = 3000

// span is an inclusive range of offsets.
type span struct{ from, to int64 }

// encodeDelivered writes the ascending offsets as ranges.
func encodeDelivered(offs []int64) string {
	if len(offs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(metaPrefix)
	start, prev := offs[0], offs[0]
	flush := func() {
		if b.Len() > len(metaPrefix) {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(start, 10))
		if prev != start {
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(prev, 10))
		}
	}
	for _, o := range offs[1:] {
		if o == prev+1 {
			prev = o
			continue
		}
		flush()
		start, prev = o, o
	}
	flush()
	if b.Len() > maxMeta {
		return metaPrefix + strconv.FormatInt(offs[0], 10) + "-" + strconv.FormatInt(offs[len(offs)-1], 10)
	}
	return b.String()
}

// decodeDelivered reads what encodeDelivered wrote; anything else (a
// Python consumer's commit) marks nothing.
func decodeDelivered(meta string) []span {
	rest, ok := strings.CutPrefix(meta, metaPrefix)
	if !ok || rest == "" {
		return nil
	}
	var out []span
	for _, part := range strings.Split(rest, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil
		}
		to := from
		if isRange {
			if to, err = strconv.ParseInt(b, 10, 64); err != nil || to < from {
				return nil
			}
		}
		out = append(out, span{from, to})
	}
	return out
}

func inSpans(spans []span, off int64) bool {
	for _, s := range spans {
		if off >= s.from && off <= s.to {
			return true
		}
	}
	return false
}

// withMetadata sets each committed partition's metadata, for
// kgo.PreCommitFnContext.
func withMetadata(topic string, meta map[int32]string) func(*kmsg.OffsetCommitRequest) error {
	return func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			if req.Topics[i].Topic != topic {
				continue
			}
			for j := range req.Topics[i].Partitions {
				if m, ok := meta[req.Topics[i].Partitions[j].Partition]; ok {
					req.Topics[i].Partitions[j].Metadata = &m
				}
			}
		}
		return nil
	}
}
