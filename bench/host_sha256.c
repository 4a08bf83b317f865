/* host_sha256.c - the default guest's SHA-256, built for the host.
 *
 * hatch-bench sets the guest's sha256 against "the same C code on the
 * host". Rather than a copy of the algorithm, this file includes
 * guest/default/main.c itself and calls its hatch_fn_sha256; the SDK
 * functions that file refers to get host stand-ins here (only
 * hatch_memcpy runs on the hash's path: the last partial block's copy).
 * CMakeLists.txt compiles this file with the guest's code-generation
 * flags (-O2 -ffreestanding -fno-builtin -mno-red-zone ...) instead of
 * the Release -O3, so that the two sides run the same machine code as far
 * as the compiler is concerned. The other guest functions are compiled in
 * and never called.
 */
#include <stdio.h>
#include <string.h>

#include <hatchery_guest.h>

#include "host_sha256.h"
#include "sha256-guest/pattern.h"

void *hatch_memcpy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }
void *hatch_memset(void *dst, int c, size_t n) { return memset(dst, c, n); }
size_t hatch_strlen(const char *s) { return strlen(s); }
size_t hatch_utoa(uint64_t v, char *buf)
{
	return (size_t)sprintf(buf, "%llu", (unsigned long long)v);
}
int hatch_fail(const char *msg) { (void)msg; return 1; }
void hatch_log(const char *msg) { (void)msg; }
void hatch_log_n(const char *msg, size_t len) { (void)msg; (void)len; }
void *hatch_alloc(size_t size) { (void)size; return NULL; }
void hatch_heap_reset(void) {}
uint64_t hatch_heap_size(void) { return 0; }
uint64_t hatch_guest_generation(void) { return 0; }
size_t hatch_guest_seed(void *buf, size_t len) { memset(buf, 0, len); return len; }

#include "../guest/default/main.c"

void host_sha256(const void *data, uint64_t len, uint8_t digest[32])
{
	struct hatch_call c = {
		.in = data,
		.in_len = len,
		.out = digest,
		.out_cap = 32,
	};
	hatch_fn_sha256(&c);
}

void host_pattern(uint8_t *p, uint64_t n)
{
	bench_pattern(p, n);
}
