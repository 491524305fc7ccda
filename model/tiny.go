package model

const tinyDoc = "tiny test model (two convolutions, global average pool, fully connected)"

// tinyFCStd puts the tiny model's logits' spread across classes at about 2
// for ImageNet-like inputs.
const tinyFCStd = 0.3

// tiny appends the tiny model from the normalised image x to its flattened
// 32 features: conv 3→16 7x7/4 + ReLU, conv 16→32 3x3/2 + ReLU, global
// average pool, flatten. About 11 M MACs per image.
func tiny(b *builder, x string) string {
	x = b.conv("conv1", x, 16, 7, 4, 1)
	x = b.relu("relu1", x)
	x = b.conv("conv2", x, 32, 3, 2, 1)
	x = b.relu("relu2", x)
	x = b.globalAveragePool("avgpool", x)
	return b.flatten("flatten", x)
}
