/* The guest behind hatch-bench's sha256 figure: the default guest
 * (guest/default/main.c, included whole: echo, sha256, ...) and two more
 * functions, so that 1 MiB can be hashed inside the guest in one call
 * although a call's payload is bounded by the VM socket's 64 KiB packet
 * (docs/protocol.md, "Call"):
 *
 *   fill         payload: a decimal byte count N; allocates N bytes of heap
 *                and fills them with bench_pattern() (pattern.h). Untimed.
 *   sha256_heap  the SHA-256 of those N bytes, computed by the default
 *                guest's own sha256 function (hatch_fn_sha256) on a call
 *                whose input is the heap buffer instead of the input buffer
 *
 * The algorithm is not copied: hatch-bench's host figure runs the same
 * function from the same file (bench/host_sha256.c). Built with the guest
 * flags by CMakeLists.txt (bench section) into build-bench/guest/.
 */
#include "../../guest/default/main.c"

#include "pattern.h"

static uint8_t *heap_buf;
static uint64_t heap_len;

HATCH_GUEST_FUNCTION(fill)
{
	uint64_t n;
	if (parse_u64(call->in, call->in_len, &n) < 0)
		return hatch_fail("fill: the payload must be a decimal number of bytes");
	hatch_heap_reset();
	heap_buf = hatch_alloc(n ? n : 1);
	heap_len = 0;
	if (!heap_buf)
		return hatch_fail("fill: out of memory");
	bench_pattern(heap_buf, n);
	heap_len = n;
	call->out_len = 0;
	return 0;
}

HATCH_GUEST_FUNCTION(sha256_heap)
{
	if (!heap_buf)
		return hatch_fail("sha256_heap: call fill first");
	struct hatch_call c = {
		.in = heap_buf,
		.in_len = heap_len,
		.out = call->out,
		.out_cap = call->out_cap,
	};
	int r = hatch_fn_sha256(&c);
	call->out_len = c.out_len;
	return r;
}
