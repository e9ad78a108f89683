package gcpubsub

import "testing"

// Expected values are Python's, from Kombu 5.5's entity_name and
// uuid.uuid3, computed with /usr/bin/python3.
func TestKombuNames(t *testing.T) {
	for in, want := range map[string]string{
		"celery": "kombu-celery", "celery.high": "kombu-celery-high", "a/b:c@d": "kombu-a_b_c_d",
		"x_y-z": "kombu-x_y-z", "kombu-already": "kombu-already",
	} {
		if got := entityName("kombu-", in); got != want {
			t.Errorf("entityName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := uuid3(namespaceOID, "myhost.1234"); got != "46fbed7c-6db2-35dd-8ada-0a71806580fe" {
		t.Errorf("uuid3 = %s", got)
	}
	keys, ok := filterKeys(routingKeyFilter([]string{"a", `q"x`}))
	if !ok || len(keys) != 2 || keys[0] != "a" || keys[1] != `q"x` {
		t.Errorf("filter round trip: %q, %v", keys, ok)
	}
	if routingKeyFilter([]string{"high"}) != `attributes.routing_key="high"` {
		t.Errorf("Kombu's filter: %s", routingKeyFilter([]string{"high"}))
	}
}
