package host

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Class is one class of a classification: its index in the model's
// output and its probability (from TopK: the raw output value).
type Class struct {
	Index int
	Prob  float32
}

// Classes returns the k most probable classes of row, one row of the
// model's first output as FP32 scores, highest first: softmax is applied
// as the model's softmax setting says (auto: when the scores are not
// already a distribution).
func (m *Model) Classes(row []byte, k int) []Class {
	scores := decodeFP32(row)
	if m.softmax == "true" || (m.softmax == "auto" && !isDistribution(scores)) {
		softmax(scores)
	}
	return topK(scores, k)
}

// TopK returns the k highest of row's FP32 scores as the model gave
// them, highest first, ties by lower index, k clamped to the row: what
// Triton's classification extension ranks and reports (raw output values,
// no softmax, whatever the model's softmax setting).
func TopK(row []byte, k int) []Class {
	return topK(decodeFP32(row), k)
}

// LabelOf returns class i's label from the labels file, and false when
// the model has no label for i (no labels file, or a short one).
func (m *Model) LabelOf(i int) (string, bool) {
	if i >= 0 && i < len(m.labels) {
		return m.labels[i], true
	}
	return "", false
}

func decodeFP32(row []byte) []float32 {
	scores := make([]float32, len(row)/4)
	for i := range scores {
		scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(row[4*i:]))
	}
	return scores
}

// Label names class i: its label from the labels file, else its index.
func (m *Model) Label(i int) string {
	if i < len(m.labels) {
		return m.labels[i]
	}
	return strconv.Itoa(i)
}

// isDistribution reports whether scores already look like probabilities.
func isDistribution(scores []float32) bool {
	var sum float64
	for _, v := range scores {
		if v < 0 || v > 1 {
			return false
		}
		sum += float64(v)
	}
	return math.Abs(sum-1) < 1e-3
}

func softmax(x []float32) {
	max := float32(math.Inf(-1))
	for _, v := range x {
		max = float32(math.Max(float64(max), float64(v)))
	}
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v - max))
		x[i] = float32(e)
		sum += e
	}
	for i := range x {
		x[i] = float32(float64(x[i]) / sum)
	}
}

// topK returns the k highest scores, highest first; ties by lower index.
func topK(scores []float32, k int) []Class {
	k = min(k, len(scores))
	top := make([]Class, 0, k+1)
	for i, v := range scores {
		if len(top) == k && v <= top[k-1].Prob {
			continue
		}
		j := len(top)
		top = append(top, Class{})
		for j > 0 && top[j-1].Prob < v {
			top[j] = top[j-1]
			j--
		}
		top[j] = Class{Index: i, Prob: v}
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}
