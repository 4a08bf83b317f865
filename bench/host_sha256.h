/* host_sha256.h - the default guest's sha256 function, built for the host
 * (host_sha256.c), and the bytes hatch-bench hashes. */
#ifndef HATCH_BENCH_HOST_SHA256_H
#define HATCH_BENCH_HOST_SHA256_H

#include <stdint.h>

/* SHA-256 of data[0..len) by guest/default/main.c's hatch_fn_sha256. */
void host_sha256(const void *data, uint64_t len, uint8_t digest[32]);
/* sha256-guest/pattern.h's bench_pattern: what the guest's `fill` writes. */
void host_pattern(uint8_t *p, uint64_t n);

#endif
