package generator

import (
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// wrapWidth is where generated sentences wrap; proto comments keep their own
// line breaks.
const wrapWidth = 77

// doc is a doc comment under construction: paragraphs separated by blank
// comment lines.
type doc struct{ paragraphs []string }

// text adds a generated paragraph, word-wrapped.
func (d *doc) text(s string) *doc {
	d.paragraphs = append(d.paragraphs, wrap(s))
	return d
}

// comments adds a proto comment as it was written.
func (d *doc) comments(c protogen.Comments) *doc {
	if s := strings.TrimSuffix(c.String(), "\n"); s != "" {
		d.paragraphs = append(d.paragraphs, s)
	}
	return d
}

// source adds the leading and trailing comments of a proto element.
func (d *doc) source(c protogen.CommentSet) *doc {
	return d.comments(c.Leading).comments(c.Trailing)
}

// deprecated adds the paragraph that makes Go tools flag uses of the symbol.
func (d *doc) deprecated(yes bool) *doc {
	if yes {
		d.paragraphs = append(d.paragraphs, "// Deprecated: Do not use.")
	}
	return d
}

// print writes the doc comment.
func (d *doc) print(g *protogen.GeneratedFile) {
	g.P(strings.Join(d.paragraphs, "\n//\n"))
}

// wrap turns s into comment lines of at most wrapWidth columns.
func wrap(s string) string {
	var lines []string
	line := "//"
	for _, word := range strings.Fields(s) {
		if len(line)+1+len(word) > wrapWidth && line != "//" {
			lines = append(lines, line)
			line = "//"
		}
		line += " " + word
	}
	return strings.Join(append(lines, line), "\n")
}

// printLeadingComments copies the comments above a file's syntax or package
// statement, as protoc-gen-go and protoc-gen-go-grpc do, so that license
// headers and package docs carry over.
func printLeadingComments(g *protogen.GeneratedFile, loc protoreflect.SourceLocation) {
	for _, s := range loc.LeadingDetachedComments {
		g.P(protogen.Comments(s))
		g.P()
	}
	if s := loc.LeadingComments; s != "" {
		g.P(protogen.Comments(s))
		g.P()
	}
}

// serviceDeprecated and methodDeprecated report the deprecated option.
func serviceDeprecated(s *protogen.Service) bool {
	opts, ok := s.Desc.Options().(*descriptorpb.ServiceOptions)
	return ok && opts.GetDeprecated()
}

func methodDeprecated(m *protogen.Method) bool {
	opts, ok := m.Desc.Options().(*descriptorpb.MethodOptions)
	return ok && opts.GetDeprecated()
}
