package model

import "testing"

// ParseName undoes Name for every variant, and gives the defaults filled
// in, so that two names of one model parse to equal Specs.
func TestParseNameRoundTrips(t *testing.T) {
	specs := append(allSpecs(ArchTiny), allSpecs(ArchResNet50)...)
	specs = append(specs, Spec{}, Spec{Arch: ArchTiny, Seed: 7}, Spec{Arch: ArchTiny, DType: Float16, Input: Uint8, Logits: true, Seed: 2})
	for _, s := range specs {
		got, err := ParseName(s.Name())
		if err != nil {
			t.Errorf("ParseName(%q): %v", s.Name(), err)
			continue
		}
		if want := s.withDefaults(); got != want {
			t.Errorf("ParseName(%q) = %+v, want %+v", s.Name(), got, want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ParseName(%q) = %+v: %v", s.Name(), got, err)
		}
	}
	// Parts in another order, or the default seed spelled out, name the
	// same model.
	for name, canonical := range map[string]string{
		"tiny-logits-fp16": "tiny-fp16-logits",
		"resnet50-seed1":   "resnet50",
		"tiny-uint8-uint8": "tiny-uint8",
	} {
		s, err := ParseName(name)
		if err != nil || s.Name() != canonical {
			t.Errorf("ParseName(%q) = %q, %v; want %q", name, s.Name(), err, canonical)
		}
	}
}

// Each mistake says which part is wrong and what a name looks like.
func TestParseNameErrors(t *testing.T) {
	for name, want := range map[string]string{
		"":           "model: empty name (want ARCH[-fp16][-uint8][-logits][-seedN], ARCH resnet50 or tiny)",
		"resnet51":   `model: unknown arch "resnet51" (want resnet50 or tiny)`,
		"Tiny":       `model: unknown arch "Tiny" (want resnet50 or tiny)`,
		"tiny-fp8":   `model: unknown part "fp8" (want ARCH[-fp16][-uint8][-logits][-seedN], ARCH resnet50 or tiny)`,
		"tiny-":      `model: unknown part "" (want ARCH[-fp16][-uint8][-logits][-seedN], ARCH resnet50 or tiny)`,
		"tiny-seed":  `model: bad seed "seed" (want seedN, N a whole number from 1)`,
		"tiny-seed0": `model: bad seed "seed0" (want seedN, N a whole number from 1)`,
		"tiny-seedx": `model: bad seed "seedx" (want seedN, N a whole number from 1)`,
	} {
		_, err := ParseName(name)
		if err == nil || err.Error() != want {
			t.Errorf("ParseName(%q) = %v, want %s", name, err, want)
		}
	}
}
