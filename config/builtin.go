package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/inferd/inferd/model"
)

// BuiltinSpec parses the name of a generated model, as model.Spec.Name
// writes it: an arch followed by -fp16, -uint8, -logits and -seedN, e.g.
// "resnet50", "resnet50-fp16-uint8", "tiny-logits".
func BuiltinSpec(name string) (model.Spec, error) {
	if name == "" {
		return model.Spec{}, fmt.Errorf("builtin model name is empty (want e.g. builtin:resnet50)")
	}
	parts := strings.Split(name, "-")
	s := model.Spec{Arch: parts[0]}
	for _, p := range parts[1:] {
		switch {
		case p == "fp16":
			s.DType = model.Float16
		case p == "uint8":
			s.Input = model.Uint8
		case p == "logits":
			s.Logits = true
		case strings.HasPrefix(p, "seed"):
			n, err := strconv.ParseUint(p[len("seed"):], 10, 64)
			if err != nil || n == 0 {
				return s, fmt.Errorf("builtin model %q: bad seed %q", name, p)
			}
			s.Seed = n
		default:
			return s, fmt.Errorf("builtin model %q: unknown part %q (want ARCH[-fp16][-uint8][-logits][-seedN], ARCH resnet50 or tiny)", name, p)
		}
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("builtin model %q: %w", name, err)
	}
	return s, nil
}
