/* The default guest: the functions hatchery's tests and benchmarks call.
 *
 *   echo    returns its payload
 *   sha256  the SHA-256 of its payload (32 bytes), computed in the guest
 *   alloc   payload: a decimal number N; allocates and touches N MiB of heap
 *   fault   payload: "" (read address 0), "write" (write to read-only data),
 *           "ud" (invalid opcode), "de" (divide by zero), "bp" (int3)
 *   spin    never returns
 *   ports   payload: "" (write I/O port 0x80), "in" (read port 0x64),
 *           "mmio" (read the local APIC at 0xfee00000)
 *   log     logs each line of its payload, returns the number of lines
 *   random  16 bytes from a PRNG seeded from the host's seed, then the
 *           generation (8 bytes, little-endian); reseeded whenever the
 *           generation changes, so clones of one snapshot differ
 */
#include <hatchery_guest.h>

HATCH_GUEST_FUNCTION(echo)
{
	hatch_memcpy(call->out, call->in, call->in_len);
	call->out_len = call->in_len;
	return 0;
}

/* ---- SHA-256 (FIPS 180-4) ---- */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

HATCH_GUEST_FUNCTION(sha256)
{
	uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	uint64_t n = call->in_len, i = 0;
	for (; i + 64 <= n; i += 64)
		sha256_block(h, call->in + i);
	uint8_t tail[128] = { 0 };
	uint64_t r = n - i;
	hatch_memcpy(tail, call->in + i, r);
	tail[r] = 0x80;
	uint64_t tl = r + 1 + 8 <= 64 ? 64 : 128;
	uint64_t bits = n * 8;
	for (int k = 0; k < 8; k++)
		tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
	for (uint64_t k = 0; k < tl; k += 64)
		sha256_block(h, tail + k);
	for (int k = 0; k < 8; k++) {
		call->out[4 * k] = (uint8_t)(h[k] >> 24);
		call->out[4 * k + 1] = (uint8_t)(h[k] >> 16);
		call->out[4 * k + 2] = (uint8_t)(h[k] >> 8);
		call->out[4 * k + 3] = (uint8_t)h[k];
	}
	call->out_len = 32;
	return 0;
}

static int parse_u64(const uint8_t *s, uint64_t n, uint64_t *v)
{
	uint64_t x = 0;
	if (n == 0 || n > 12)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

static uint64_t append(uint8_t *out, uint64_t at, const char *s)
{
	uint64_t n = hatch_strlen(s);
	hatch_memcpy(out + at, s, n);
	return at + n;
}

HATCH_GUEST_FUNCTION(alloc)
{
	uint64_t mib;
	char num[24];
	if (parse_u64(call->in, call->in_len, &mib) < 0)
		return hatch_fail("alloc: the payload must be a decimal number of MiB");
	hatch_heap_reset();
	uint8_t *p = mib <= (1ull << 20) ? hatch_alloc(mib << 20) : 0;
	if (!p) {
		char msg[128];
		uint64_t at = append((uint8_t *)msg, 0, "alloc: out of memory: the heap has ");
		hatch_utoa(hatch_heap_size() >> 20, num);
		at = append((uint8_t *)msg, at, num);
		at = append((uint8_t *)msg, at, " MiB");
		msg[at] = '\0';
		return hatch_fail(msg);
	}
	for (uint64_t off = 0; off < (mib << 20); off += 4096)
		((volatile uint8_t *)p)[off] = 1;
	uint64_t at = append(call->out, 0, "touched ");
	hatch_utoa(mib, num);
	at = append(call->out, at, num);
	at = append(call->out, at, " MiB");
	call->out_len = at;
	return 0;
}

static int is(const struct hatch_call *c, const char *s)
{
	uint64_t n = hatch_strlen(s);
	if (c->in_len != n)
		return 0;
	for (uint64_t i = 0; i < n; i++)
		if (c->in[i] != (uint8_t)s[i])
			return 0;
	return 1;
}

static const uint64_t read_only = 42;

HATCH_GUEST_FUNCTION(fault)
{
	if (is(call, "write"))
		*(volatile uint64_t *)&read_only = 0;
	else if (is(call, "ud"))
		__asm__ volatile("ud2");
	else if (is(call, "de")) {
		/* In asm: a compiler may turn 1 / x into x == 1. */
		uint64_t zero = 0, rax = 1, rdx = 0;
		__asm__ volatile("divq %2" : "+a"(rax), "+d"(rdx) : "r"(zero));
	} else if (is(call, "bp"))
		__asm__ volatile("int3");
	else
		call->out_len = *(volatile uint64_t *)0;
	return hatch_fail("fault: still alive?");
}

HATCH_GUEST_FUNCTION(spin)
{
	for (;;)
		__asm__ volatile("" ::: "memory");
	return 0;
}

HATCH_GUEST_FUNCTION(ports)
{
	if (is(call, "in")) {
		uint8_t v;
		__asm__ volatile("inb $0x64, %0" : "=a"(v));
		call->out[0] = v;
	} else if (is(call, "mmio")) {
		call->out[0] = *(volatile uint8_t *)0xfee00000ull;
	} else {
		__asm__ volatile("outb %0, $0x80" : : "a"((uint8_t)0x42));
	}
	return hatch_fail("ports: the runtime let it through");
}

HATCH_GUEST_FUNCTION(log)
{
	uint64_t start = 0, lines = 0;
	for (uint64_t i = 0; i <= call->in_len; i++) {
		if (i == call->in_len || call->in[i] == '\n') {
			if (i > start) {
				hatch_log_n((const char *)call->in + start, i - start);
				lines++;
			}
			start = i + 1;
		}
	}
	call->out_len = hatch_utoa(lines, (char *)call->out);
	return 0;
}

/* ---- random: xoshiro256** seeded through splitmix64 ----
 * The PRNG state lives in guest RAM, so a snapshot holds it: every clone
 * would continue the same sequence. Keyed on the generation, it is
 * rebuilt from the host's fresh seed after each restore. Not a CSPRNG: a
 * guest that needs one builds it the same way from the seed. */
static uint64_t rng[4];
static uint64_t rng_generation;
static int rng_seeded;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rol64(uint64_t x, unsigned k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(void)
{
	uint64_t r = rol64(rng[1] * 5, 7) * 9, t = rng[1] << 17;
	rng[2] ^= rng[0];
	rng[3] ^= rng[1];
	rng[1] ^= rng[2];
	rng[0] ^= rng[3];
	rng[2] ^= t;
	rng[3] = rol64(rng[3], 45);
	return r;
}

static void rng_reseed(uint64_t generation)
{
	uint64_t seed[HATCH_SEED_SIZE / 8];
	hatch_guest_seed(seed, sizeof(seed));
	for (int i = 0; i < 4; i++) {
		uint64_t x = seed[i];
		rng[i] = splitmix64(&x);
	}
	rng_generation = generation;
	rng_seeded = 1;
}

HATCH_GUEST_FUNCTION(random)
{
	uint64_t gen = hatch_guest_generation();
	if (!rng_seeded || gen != rng_generation)
		rng_reseed(gen);
	for (int i = 0; i < 2; i++) {
		uint64_t v = xoshiro_next();
		for (int k = 0; k < 8; k++)
			call->out[8 * i + k] = (uint8_t)(v >> (8 * k));
	}
	for (int k = 0; k < 8; k++)
		call->out[16 + k] = (uint8_t)(gen >> (8 * k));
	call->out_len = 24;
	return 0;
}
