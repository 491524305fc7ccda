// A stand-in for libcudart.so.13 with the four functions gpu's pinned
// allocator calls, so the tests can run that path on a machine without
// CUDA: cudaHostAlloc is aligned_alloc (page-aligned, as the real one), and
// it fails as the real one does on flags other than portable and on
// sizes it cannot meet. gpu/pinned_test.go builds it with the C compiler.
#include <stdlib.h>

static int device = -1;

int cudaSetDevice(int dev) {
	if (dev < 0) {
		return 101; // cudaErrorInvalidDevice
	}
	device = dev;
	return 0;
}

int cudaHostAlloc(void **p, size_t n, unsigned int flags) {
	if (device < 0 || flags != 1) {
		return 1; // cudaErrorInvalidValue: no device made current, or not portable
	}
	size_t rounded = (n + 4095) / 4096 * 4096;
	if (rounded < n) {
		return 2;
	}
	*p = aligned_alloc(4096, rounded);
	return *p == NULL ? 2 : 0; // cudaErrorMemoryAllocation
}

int cudaFreeHost(void *p) {
	free(p);
	return 0;
}

const char *cudaGetErrorString(int e) {
	switch (e) {
	case 1:
		return "invalid argument";
	case 2:
		return "out of memory";
	case 101:
		return "invalid device ordinal";
	}
	return "unrecognized error code";
}
