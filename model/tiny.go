package model

const tinyDoc = "tiny test model (two convolutions, global average pool, fully connected)"

// tinyFCStd puts the tiny model's logits' spread across classes at about 2
// for ImageNet-like inputs (16 features: a wider weight spread than before).
const tinyFCStd = 0.6

// tiny appends the tiny model from the normalised image x to its flattened
// 16 features: conv 3→8 8x8/8 (a patch embedding) + ReLU, conv 8→16 3x3/2
// + ReLU, global average pool, flatten. About 1.6 M MACs per image: cheap
// enough that a server benchmark on it measures HTTP, parsing and batching
// rather than convolution.
func tiny(b *builder, x string) string {
	x = b.conv("conv1", x, 8, 8, 8, 1)
	x = b.relu("relu1", x)
	x = b.conv("conv2", x, 16, 3, 2, 1)
	x = b.relu("relu2", x)
	x = b.globalAveragePool("avgpool", x)
	return b.flatten("flatten", x)
}
