package generator

import (
	"go/token"
	"strings"
	"unicode"

	"google.golang.org/protobuf/compiler/protogen"
)

// namer hands out the package-level identifiers of one Go package. The
// generated files share their package with protoc-gen-go's output and with
// each other, so a name such as OrdersProducer may already be a message type;
// the namer then appends underscores until the name is free, as protoc-gen-go
// does with its own conflicts. Generated code always compiles, even when its
// names are less pretty.
type namer struct {
	taken map[string]bool
}

// newNamer reserves every package-level name protoc-gen-go declares for the
// files of the request that are in package pkg.
func newNamer(gen *protogen.Plugin, pkg protogen.GoImportPath) *namer {
	n := &namer{taken: make(map[string]bool)}
	for _, f := range gen.Files {
		if f.GoImportPath != pkg {
			continue
		}
		n.taken[f.GoDescriptorIdent.GoName] = true
		n.reserveEnums(f.Enums)
		n.reserveMessages(f.Messages)
		n.reserveExtensions(f.Extensions)
	}
	return n
}

func (n *namer) reserveMessages(msgs []*protogen.Message) {
	for _, m := range msgs {
		n.taken[m.GoIdent.GoName] = true
		for _, o := range m.Oneofs {
			for _, f := range o.Fields {
				n.taken[f.GoIdent.GoName] = true // the oneof's wrapper type
			}
		}
		n.reserveEnums(m.Enums)
		n.reserveMessages(m.Messages)
		n.reserveExtensions(m.Extensions)
	}
}

func (n *namer) reserveEnums(enums []*protogen.Enum) {
	for _, e := range enums {
		n.taken[e.GoIdent.GoName] = true
		n.taken[e.GoIdent.GoName+"_name"] = true
		n.taken[e.GoIdent.GoName+"_value"] = true
		for _, v := range e.Values {
			n.taken[v.GoIdent.GoName] = true
		}
	}
}

func (n *namer) reserveExtensions(exts []*protogen.Extension) {
	for _, x := range exts {
		n.taken[x.GoIdent.GoName] = true
	}
}

// name returns want, or want with underscores appended if it is taken, and
// marks the result taken. Names starting with "file_" (protoc-gen-go's
// unexported descriptors) and "Default_" (its proto2 default constants) are
// never handed out.
func (n *namer) name(want string) string {
	for n.taken[want] || strings.HasPrefix(want, "file_") || strings.HasPrefix(want, "Default_") {
		want += "_"
	}
	n.taken[want] = true
	return want
}

// unexport lower-cases the leading capital of a Go name, or its leading
// acronym ("HTTPRequest" becomes "httpRequest", "URL" becomes "url"). The
// result is only ever used as a prefix, so it cannot be a Go keyword.
// fieldName is the unexported struct field for an exported method name; the
// names are unique because the methods' names are, and a keyword ("type",
// "func") gets a trailing underscore.
func fieldName(method string) string {
	f := unexport(method)
	if token.IsKeyword(f) {
		f += "_"
	}
	return f
}

func unexport(s string) string {
	r := []rune(s)
	n := 0
	for n < len(r) && unicode.IsUpper(r[n]) {
		n++
	}
	if n > 1 && n < len(r) && unicode.IsLower(r[n]) {
		n-- // the last capital starts the next word: HTTPRequest
	}
	for i := range n {
		r[i] = unicode.ToLower(r[i])
	}
	return string(r)
}

// camel turns a queue name such as "orders.work-queue" into "OrdersWorkQueue"
// for use in an identifier; it returns "Queue" for a name with no letters or
// digits, and prefixes one that starts with a digit.
func camel(s string) string {
	var b strings.Builder
	for _, word := range strings.FieldsFunc(s, func(r rune) bool {
		return r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r))
	}) {
		b.WriteString(strings.ToUpper(word[:1]) + word[1:])
	}
	out := b.String()
	if out == "" || unicode.IsDigit(rune(out[0])) {
		out = "Queue" + out
	}
	return out
}
