/* fuzz_agent_frames.c - libFuzzer harness for the agent channel's frame
 * decoder (vmproc/devices/agent_frame.c).
 *
 * The input's first byte picks how the rest is cut into pieces (the guest
 * decides how its bytes fall into virtio buffers); the rest is the byte
 * stream. It is decoded twice, whole and in pieces, and the two runs must
 * agree: same frames (lengths and a hash of each payload), same error,
 * after the same number of frames. Every payload byte is read, so that
 * ASan sees any bound the decoder got wrong, and no payload may exceed
 * the limit. Build with -DHATCH_FUZZ=ON (scripts/fuzz).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "devices/agent_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
	uint64_t frames;
	uint64_t hash;
};

static int count(void *opaque, const uint8_t *p, size_t len)
{
	struct tally *t = opaque;
	if (len > VMP_AGENT_MAX_FRAME)
		__builtin_trap();
	uint64_t h = t->hash ^ len;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull; /* FNV-1a */
	t->hash = h * 31 + 7;
	t->frames++;
	/* A reader that refuses, sometimes: the decoder must stop there. */
	if (len == 7 && p[0] == 0xEE)
		return -74; /* -EBADMSG */
	return 0;
}

/* Decoders are 64 KiB: static, not on the stack. */
static struct vmp_frame_dec whole, cut;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;

	struct tally a = { 0, 0 }, b = { 0, 0 };
	vmp_frame_dec_init(&whole);
	int ra = vmp_frame_dec_feed(&whole, data, size, count, &a);

	vmp_frame_dec_init(&cut);
	int rb = 0;
	size_t off = 0, k = 0;
	while (off < size) {
		/* Piece sizes 1..256 from the mode byte and the position. */
		size_t piece = 1 + (size_t)((mode * 131u + k * 17u + (mode >> 3) * k * k) & 0xff);
		if (piece > size - off)
			piece = size - off;
		rb = vmp_frame_dec_feed(&cut, data + off, piece, count, &b);
		off += piece;
		k++;
	}
	if (ra != rb || a.frames != b.frames || a.hash != b.hash)
		__builtin_trap();
	if (ra == 0 && vmp_frame_dec_partial(&whole) != vmp_frame_dec_partial(&cut))
		__builtin_trap();
	return 0;
}
