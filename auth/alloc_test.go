//go:build !race

package auth

import "testing"

// A request let through costs no allocation: the hash, the lookup, the
// bucket and the counter work in place.
func TestCheckAllocations(t *testing.T) {
	a, _, _ := newTestAuth(t, Settings{Enabled: true, KeysFile: testKeysFile(t)})
	r := Request{Authorization: withBearer("key-b"), Model: []byte("tiny-uint8")}
	if n := testing.AllocsPerRun(100, func() {
		if err := a.Check(r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%.1f allocations per request let through", n)
	}
	off, _, _ := newTestAuth(t, Settings{Tenants: []string{"team-a"}})
	r = Request{Tenant: []byte("team-a"), Model: []byte("m")}
	if n := testing.AllocsPerRun(100, func() { off.Check(r) }); n != 0 {
		t.Errorf("%.1f allocations per request counted by its tenant header", n)
	}
}
