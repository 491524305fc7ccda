package model

import "fmt"

const resnet50Doc = "ResNet-50 v1.5 (torchvision layout, batch norm folded into the convolutions)"

// Weight scales of ResNet-50. Convolutions followed by a ReLU use He-normal
// weights; the last convolution of each residual branch is scaled down so the
// identity path dominates and activations stay of order one through the 16
// blocks (finite in float16 too). The fully connected layer's scale puts the
// logits' spread across classes at about 2 for ImageNet-like inputs, so that
// the probabilities are neither uniform nor one-hot.
const (
	resnet50BranchGain = 0.25
	resnet50FCStd      = 0.02
)

// resnet50 appends ResNet-50 v1.5 from the normalised image x to the
// flattened 2048 features: conv1 7x7/2 + ReLU, max pool 3x3/2, four layers of
// 3, 4, 6 and 3 bottleneck blocks of widths 64, 128, 256 and 512 (expansion
// 4, stride on the 3x3 convolution, 1x1 downsample on each layer's first
// block), global average pool and flatten.
func resnet50(b *builder, x string) string {
	x = b.conv("conv1", x, 64, 7, 2, 1)
	x = b.relu("relu", x)
	x = b.maxPool("maxpool", x, 3, 2, 1)
	widths := [4]int{64, 128, 256, 512}
	blocks := [4]int{3, 4, 6, 3}
	for l := range 4 {
		for i := range blocks[l] {
			stride := 1
			if i == 0 && l > 0 {
				stride = 2
			}
			x = bottleneck(b, fmt.Sprintf("layer%d.%d", l+1, i), x, widths[l], stride, i == 0)
		}
	}
	x = b.globalAveragePool("avgpool", x)
	return b.flatten("flatten", x)
}

// bottleneck appends one bottleneck block named p: 1x1, 3x3 (strided) and
// 1x1 convolutions with ReLUs, plus the identity or a 1x1 downsample.
func bottleneck(b *builder, p, x string, width, stride int, downsample bool) string {
	y := b.conv(p+".conv1", x, width, 1, 1, 1)
	y = b.relu(p+".relu1", y)
	y = b.conv(p+".conv2", y, width, 3, stride, 1)
	y = b.relu(p+".relu2", y)
	y = b.conv(p+".conv3", y, 4*width, 1, 1, resnet50BranchGain)
	identity := x
	if downsample {
		identity = b.conv(p+".downsample.0", x, 4*width, 1, stride, 1)
	}
	y = b.add(p+".add", y, identity)
	return b.relu(p+".relu3", y)
}
