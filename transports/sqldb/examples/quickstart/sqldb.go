// This folder builds examples/quickstart (main.go is a link to its
// main.go) with the SQL transport linked in, which the root module's
// quickstart cannot import without making every user of kombu-go download
// the SQL drivers:
//
//	cd transports/sqldb && KOMBU_URL=sqlite:////tmp/shop.db go run ./examples/quickstart
//
// (make demo does this for a SQL KOMBU_URL.)
package main

import _ "github.com/kombu-go/kombu/transports/sqldb" // KOMBU_URL=sqlite:///..., postgresql://..., mysql://..., sqla+...
