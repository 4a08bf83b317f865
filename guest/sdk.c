/* sdk.c - the guest side of the hatchery ABI (hatchery_guest_abi.h): tell
 * the host which functions exist, then answer its requests forever. */
#include "hatchery_guest.h"

#define SHARED ((volatile struct hatch_shared *)HATCH_SHARED_ADDR)

extern const struct hatch_fn_desc __start_hatch_fn[], __stop_hatch_fn[];

static uint64_t heap_next;

/* The only way out of the guest. The host resumes us right after the
 * instruction; the memory clobber orders our shared-page accesses around
 * it. */
static inline void hypercall(uint8_t nr)
{
	__asm__ volatile("outb %0, %1" : : "a"(nr), "i"(HATCH_HC_PORT) : "memory");
}

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

void *memcpy(void *dst, const void *src, size_t n)
{
	/* rep movsb: fast on anything with ERMS, and small. */
	void *d = dst;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;
	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	while (n--)
		d[n] = s[n];
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

void *hatch_memcpy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }
void *hatch_memset(void *dst, int c, size_t n) { return memset(dst, c, n); }

size_t hatch_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

size_t hatch_utoa(uint64_t v, char *buf)
{
	char tmp[21];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
	return n;
}

int hatch_fail(const char *msg)
{
	size_t n = hatch_strlen(msg);
	if (n > HATCH_ERROR_MAX - 1)
		n = HATCH_ERROR_MAX - 1;
	memcpy((void *)SHARED->error, msg, n);
	SHARED->error_len = (uint32_t)n;
	return 1;
}

void hatch_log_n(const char *msg, size_t len)
{
	if (len > HATCH_LOG_MAX)
		len = HATCH_LOG_MAX;
	memcpy((void *)SHARED->log, msg, len);
	SHARED->log_len = (uint32_t)len;
	hypercall(HATCH_HC_LOG);
}

void hatch_log(const char *msg)
{
	hatch_log_n(msg, hatch_strlen(msg));
}

void *hatch_alloc(size_t size)
{
	uint64_t p = (heap_next + 15) & ~15ull;
	if (size > SHARED->heap_end || p > SHARED->heap_end - size)
		return 0;
	heap_next = p + size;
	return (void *)p;
}

void hatch_heap_reset(void)
{
	heap_next = SHARED->heap_base;
}

uint64_t hatch_heap_size(void)
{
	return SHARED->heap_end - SHARED->heap_base;
}

uint64_t hatch_guest_generation(void)
{
	return SHARED->generation;
}

size_t hatch_guest_seed(void *buf, size_t len)
{
	if (len > HATCH_SEED_SIZE)
		len = HATCH_SEED_SIZE;
	memcpy(buf, (const void *)SHARED->seed, len);
	return len;
}

static void register_functions(void)
{
	uint32_t n = 0;
	for (const struct hatch_fn_desc *d = __start_hatch_fn;
	     d < __stop_hatch_fn && n < HATCH_FN_MAX; d++, n++) {
		size_t len = hatch_strlen(d->name);
		if (len > HATCH_FN_NAME_MAX - 1)
			len = HATCH_FN_NAME_MAX - 1;
		memcpy((void *)SHARED->fn[n], d->name, len);
		SHARED->fn[n][len] = '\0';
	}
	SHARED->n_fn = n;
}

__attribute__((noreturn)) void hatch_sdk_main(void);
void hatch_sdk_main(void)
{
	hatch_heap_reset();
	register_functions();
	hypercall(HATCH_HC_READY);
	uint32_t n_fn = (uint32_t)(__stop_hatch_fn - __start_hatch_fn);
	for (;;) {
		/* The host wrote a request before resuming us. */
		uint32_t op = SHARED->op;
		uint32_t status = HATCH_STATUS_OK;
		SHARED->error_len = 0;
		SHARED->out_len = 0;
		if (op == HATCH_OP_CALL) {
			uint32_t i = SHARED->fn_index;
			if (i >= n_fn || i >= HATCH_FN_MAX) {
				status = HATCH_STATUS_NO_FUNCTION;
			} else {
				struct hatch_call c = {
					.in = (const uint8_t *)HATCH_IN_BUF,
					.in_len = SHARED->in_len,
					.out = (uint8_t *)HATCH_OUT_BUF,
					.out_cap = HATCH_BUF_SIZE,
					.out_len = 0,
				};
				if (c.in_len > HATCH_BUF_SIZE)
					c.in_len = HATCH_BUF_SIZE;
				if (__start_hatch_fn[i].fn(&c) != 0) {
					status = HATCH_STATUS_ERROR;
				} else {
					SHARED->out_len = c.out_len;
				}
			}
		}
		/* HATCH_OP_HEARTBEAT: nothing to do but answer. */
		SHARED->status = status;
		hypercall(HATCH_HC_DONE);
	}
}
