// Package kombuproto holds the source of kombu-go's proto options,
// kombu/v1/options.proto, for tools that hand it to a proto compiler: the
// kombu command writes it into a user's proto tree (kombu proto) and
// compiles .proto files that import it (kombu declare, kombu consume
// --proto). Go code that reads the options uses gen/kombu/v1 instead.
package kombuproto

import _ "embed"

// OptionsPath is the import path proto files use for the options.
const OptionsPath = "kombu/v1/options.proto"

// Options is the text of kombu/v1/options.proto.
//
//go:embed kombu/v1/options.proto
var Options string
