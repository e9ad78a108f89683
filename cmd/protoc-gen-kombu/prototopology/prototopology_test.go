package prototopology_test

import (
	"os"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	editionsv1 "github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/testgen/kombutest/editions/v1"
	kombutestv1 "github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/testgen/kombutest/v1"
	"github.com/kombu-go/kombu/cmd/protoc-gen-kombu/prototopology"
	kombu "github.com/kombu-go/kombu/runtime"
)

// The topology read from the golden descriptor set is, service by
// service, what the code generated from the same files returns.
func TestFromDescriptorSetMatchesGeneratedCode(t *testing.T) {
	b, err := os.ReadFile("../testdata/kombutest.binpb")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	services, err := prototopology.FromDescriptorSet(&set)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]kombu.Topology{
		"kombutest.v1.Orders":        kombutestv1.OrdersTopology(),
		"kombutest.v1.Fulfilment":    kombutestv1.FulfilmentTopology(),
		"kombutest.v1.Billing":       kombutestv1.BillingTopology(),
		"kombutest.v1.Notifications": kombutestv1.NotificationsTopology(),
		//lint:ignore SA1019 every service is compared, the deprecated one too
		"kombutest.v1.Heartbeats":      kombutestv1.HeartbeatsTopology(),
		"kombutest.v1.Defaults":        kombutestv1.DefaultsTopology(),
		"kombutest.v1.Reports":         kombutestv1.ReportsTopology(),
		"kombutest.v1.Idle":            kombutestv1.IdleTopology(),
		"kombutest.v1.Pricing":         kombutestv1.PricingTopology(),
		"kombutest.editions.v1.Ledger": editionsv1.LedgerTopology(),
	}
	seen := 0
	for _, s := range services {
		w, ok := want[s.Name]
		if !ok {
			continue
		}
		seen++
		if !reflect.DeepEqual(s.Topology, w) {
			t.Errorf("%s:\n got %+v\nwant %+v", s.Name, s.Topology, w)
		}
	}
	if seen != len(want) {
		t.Errorf("compared %d services, want %d (got %d services in all)", seen, len(want), len(services))
	}
}

func TestFromDescriptorSetRefusesWhatThePluginRefuses(t *testing.T) {
	b, err := os.ReadFile("../testdata/kombutest.binpb")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if _, err := prototopology.FromDescriptorSet(&set, "no/such/file.proto"); err == nil {
		t.Fatal("a file not in the set was accepted")
	}
}
