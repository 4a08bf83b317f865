/* agent_frame.h - the agent channel's framing (docs/guest-linux.md): a
 * 4-byte little-endian length, then that many bytes of payload, at most
 * VMP_AGENT_MAX_FRAME. Pure code: no KVM, no virtio, no allocation; the
 * decoder is fuzzed (tests/fuzz/fuzz_agent_frames.c).
 *
 * The decoder takes the byte stream in pieces of any size and calls
 * on_frame once per complete frame, with the payload contiguous (in its
 * own buffer when the frame came in several pieces, else pointing into the
 * input). A length over the limit is a protocol error: the decoder is then
 * dead and stays dead (every later feed returns the same error without
 * looking at the bytes). The caller owns the struct (about 64 KiB: put it
 * on the heap or in a static).
 */
#ifndef HATCHERY_VMP_AGENT_FRAME_H
#define HATCHERY_VMP_AGENT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/ipc.h"

#define VMP_AGENT_MAX_FRAME IPC_MAX_MSG /* payload bytes, both ways */
#define VMP_AGENT_HDR 4u

/* A complete frame. The payload is only valid during the call. Return 0 to
 * go on, or a negative errno to stop: the decoder is dead from then on and
 * feed returns that value (a payload that does not decode, say). */
typedef int (*vmp_frame_fn)(void *opaque, const uint8_t *payload, size_t len);

struct vmp_frame_dec {
	/* Private. */
	uint8_t hdr[VMP_AGENT_HDR];
	uint32_t hdr_have;      /* header bytes seen of the current frame */
	uint32_t len;           /* its payload length, once the header is whole */
	uint32_t have;          /* payload bytes gathered in buf */
	int error;              /* 0, or why the decoder is dead (negative) */
	uint64_t frames;        /* frames delivered */
	uint8_t buf[VMP_AGENT_MAX_FRAME];
};

void vmp_frame_dec_init(struct vmp_frame_dec *d);

/* Feed n bytes. Returns 0, or the (negative) error that killed the decoder:
 * -EMSGSIZE for a length over VMP_AGENT_MAX_FRAME, or what on_frame
 * returned. */
int vmp_frame_dec_feed(struct vmp_frame_dec *d, const uint8_t *p, size_t n,
		       vmp_frame_fn on_frame, void *opaque);

/* Is a frame partly received? (A guest that stops mid-frame.) */
bool vmp_frame_dec_partial(const struct vmp_frame_dec *d);

/* Write the 4-byte header for a payload of len bytes (len must be <=
 * VMP_AGENT_MAX_FRAME). */
void vmp_frame_hdr(uint8_t hdr[VMP_AGENT_HDR], uint32_t len);

#endif
