//go:build !race

package kserve

import "testing"

// TestAllocationBudget fails when the steady-state parse of a reused
// InferRequest starts allocating: tensors, shapes and outputs reuse their
// slices, and names equal to the last parse's are not copied again. A
// request may allocate only its id (a new string), JSON or binary: the
// JSON is read in place, with no tree and no scratch. (The fastjson
// parser before it paid up to 8 here, regrowing its value cache.)
func TestAllocationBudget(t *testing.T) {
	body, hl := binaryRequest()
	small := []byte(`{"id":"r1","inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2.5],[-3,0.125]]},` +
		`{"name":"y","datatype":"INT64","shape":[2],"data":[1,-2]}],"outputs":[{"name":"out"}]}`)
	for _, tc := range []struct {
		name   string
		body   []byte
		hl     int
		budget float64
	}{
		{"binary 150528 FP32", body, hl, 1},
		{"small JSON", small, -1, 1},
		{"JSON 150528 FP32", jsonRequest(true), -1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r InferRequest
			if err := ParseInferRequest(&r, tc.body, tc.hl); err != nil {
				t.Fatal(err)
			}
			n := testing.AllocsPerRun(10, func() {
				if err := ParseInferRequest(&r, tc.body, tc.hl); err != nil {
					t.Fatal(err)
				}
			})
			if n > tc.budget {
				t.Errorf("%v allocations per parse, budget %v", n, tc.budget)
			}
		})
	}
	r := &InferResponse{ModelName: "m", Outputs: []Tensor{{Name: "o", Datatype: FP32, Shape: []int64{1, 4}, Data: f32bytes(1, 2, 3, 4)}}, BinaryOut: []bool{false}}
	buf, _ := AppendInferResponse(nil, r)
	if n := testing.AllocsPerRun(10, func() { buf, _ = AppendInferResponse(buf[:0], r) }); n != 0 {
		t.Errorf("AppendInferResponse into a big enough buffer allocates %v times", n)
	}
}
