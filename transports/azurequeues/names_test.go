package azurequeues

import "testing"

// Names Kombu's entity_name makes valid for Azure stay Kombu's (expected
// values from Python: str.translate of string.punctuation to '-'); others
// are made valid.
func TestKombuNames(t *testing.T) {
	for in, want := range map[string]string{"celery": "celery", "celery.high": "celery-high", "a_b": "a-b", "q:1": "q-1"} {
		if got := entityName("", in); got != want {
			t.Errorf("entityName(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"Celery", "a..b", "x", "-x-", "kombu-go-conformance.TestConformance_BadInput_PublishToDeletedExchange.q.5a903a6a3911"} {
		if got := entityName("", in); !valid(got) {
			t.Errorf("entityName(%q) = %q, not a valid Azure name", in, got)
		}
	}
}
