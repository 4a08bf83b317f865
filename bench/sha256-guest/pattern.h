/* pattern.h - the bytes hatch-bench hashes, made the same way in the guest
 * (sha256-guest/main.c) and on the host (host_sha256.c): xorshift32 from a
 * fixed seed, so that neither side hashes zeroes or a page the kernel
 * shares, and the two digests can be compared. Freestanding: <stdint.h>
 * only. */
#ifndef HATCH_BENCH_PATTERN_H
#define HATCH_BENCH_PATTERN_H

#include <stdint.h>

static inline void bench_pattern(uint8_t *p, uint64_t n)
{
	uint32_t x = 2463534242u;
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

#endif
