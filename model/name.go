package model

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// nameGrammar is what ParseName takes, for its error messages.
const nameGrammar = "ARCH[-fp16][-uint8][-logits][-seedN], ARCH " + ArchResNet50 + " or " + ArchTiny

// ParseName is the inverse of Spec.Name: it parses the name of a model
// this package writes, an arch followed by -fp16, -uint8, -logits and
// -seedN, e.g. "resnet50", "resnet50-fp16-uint8", "tiny-logits-seed7". It
// is what a config's "builtin:NAME" path names. The parts after the arch
// may come in any order; ParseName(s.Name()) gives back s with its
// defaults filled in. Errors do not repeat name: the caller says where it
// came from.
func ParseName(name string) (Spec, error) {
	if name == "" {
		return Spec{}, errors.New("model: empty name (want " + nameGrammar + ")")
	}
	parts := strings.Split(name, "-")
	s := Spec{Arch: parts[0], DType: Float32, Input: Float32, Seed: DefaultSeed}
	switch s.Arch {
	case ArchResNet50, ArchTiny:
	default:
		return Spec{}, fmt.Errorf("model: unknown arch %q (want %s or %s)", s.Arch, ArchResNet50, ArchTiny)
	}
	for _, p := range parts[1:] {
		switch {
		case p == "fp16":
			s.DType = Float16
		case p == Uint8:
			s.Input = Uint8
		case p == "logits":
			s.Logits = true
		case strings.HasPrefix(p, "seed"):
			n, err := strconv.ParseUint(p[len("seed"):], 10, 64)
			if err != nil || n == 0 {
				return Spec{}, fmt.Errorf("model: bad seed %q (want seedN, N a whole number from 1)", p)
			}
			s.Seed = n
		default:
			return Spec{}, fmt.Errorf("model: unknown part %q (want %s)", p, nameGrammar)
		}
	}
	return s, nil
}
