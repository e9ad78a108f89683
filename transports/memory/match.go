package memory

import (
	"fmt"
	"strings"
)

// headersMatch is a headers-exchange binding compiled for matching, as
// RabbitMQ's rabbit_exchange_type_headers matches: with "all" every argument
// must match and with "any" at least one; the plain forms skip arguments
// whose names start with "x-", the "-with-x" forms (RabbitMQ 3.10+) only skip
// x-match itself. An argument with a nil (AMQP void) value matches when the
// header is present whatever its value; any other value must equal the
// header's, numbers comparing by value across Go types.
type headersMatch struct {
	any  bool
	args []headerArg
}

type headerArg struct {
	name  string
	value any // nil: the header only has to be present
}

func compileHeaders(args map[string]any) (headersMatch, error) {
	mode := "all"
	if v, ok := args["x-match"]; ok {
		s, _ := v.(string)
		switch s {
		case "all", "any", "all-with-x", "any-with-x":
			mode = s
		default:
			return headersMatch{}, fmt.Errorf("invalid x-match %#v: want \"all\", \"any\", \"all-with-x\" or \"any-with-x\"", v)
		}
	}
	withX := strings.HasSuffix(mode, "-with-x")
	h := headersMatch{any: strings.HasPrefix(mode, "any")}
	for name, v := range args {
		if name == "x-match" || (!withX && strings.HasPrefix(name, "x-")) {
			continue
		}
		h.args = append(h.args, headerArg{name, v})
	}
	return h, nil
}

func (h *headersMatch) match(headers map[string]any) bool {
	for _, a := range h.args {
		v, ok := headers[a.name]
		ok = ok && (a.value == nil || valuesEqual(a.value, v))
		if ok == h.any {
			return ok // the first match decides "any", the first miss "all"
		}
	}
	return !h.any // "all" with no arguments matches everything, "any" nothing
}
