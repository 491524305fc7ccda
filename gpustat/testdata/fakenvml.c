// A stand-in for libnvidia-ml.so.1 with the calls gpustat makes, for
// TestFakeLibrary: two H200s, the second reporting no power. It checks the
// struct version go-nvml sets, as the real library does.
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t;
enum { OK = 0, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, UNINITIALIZED = 1, VERSION_MISMATCH = 25 };
typedef struct { int index; } dev;
typedef dev *nvmlDevice_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;

static dev devs[2] = {{0}, {1}};
static int inits;

nvmlReturn_t nvmlInit_v2(void) { inits++; return OK; }
nvmlReturn_t nvmlShutdown(void) { if (!inits) return UNINITIALIZED; inits--; return OK; }
const char *nvmlErrorString(nvmlReturn_t r) {
	switch (r) {
	case NOT_SUPPORTED: return "Not Supported";
	case VERSION_MISMATCH: return "Argument Version Mismatch";
	}
	return "Unknown Error";
}
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) { *n = 2; return inits ? OK : UNINITIALIZED; }
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
	if (i >= 2) return INVALID_ARGUMENT;
	*d = &devs[i];
	return OK;
}
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *s, unsigned int n) {
	snprintf(s, n, "GPU-fake-%d", d->index);
	return OK;
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *s, unsigned int n) {
	snprintf(s, n, "NVIDIA H200");
	return OK;
}
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
	u->gpu = 87 - 80 * d->index;
	u->memory = 40;
	return OK;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
	if (m->version != (sizeof(nvmlMemory_v2_t) | 2u << 24)) return VERSION_MISMATCH;
	m->total = 150754820096ull;
	m->reserved = 600ull << 20;
	m->used = (40ull << 30) >> d->index;
	m->free = m->total - m->reserved - m->used;
	return OK;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
	m->total = 150754820096ull;
	m->used = ((40ull << 30) >> d->index) + (600ull << 20);
	m->free = m->total - m->used;
	return OK;
}
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
	if (d->index == 1) return NOT_SUPPORTED;
	*mw = 512345;
	return OK;
}
nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) { *mw = 700000; return OK; }
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
	if (d->index == 1) return NOT_SUPPORTED;
	*mj = 123456789ull;
	return OK;
}
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *c) {
	if (sensor != 0) return INVALID_ARGUMENT;
	*c = 45 + d->index;
	return OK;
}
nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
	if (type != 1) return INVALID_ARGUMENT; // NVML_CLOCK_SM
	*mhz = 1980;
	return OK;
}
