/* frame.h - the agent channel's framing and request checks, pure: no
 * syscalls, so the fuzzer (tests/fuzz/fuzz_agent_requests.c) and the unit
 * tests exercise exactly what the agent runs.
 *
 * A frame is a 4-byte little-endian length, then that many bytes of
 * protobuf (docs/guest-linux.md). struct agent_rx accumulates what read()
 * returned and hands out whole frames; it never allocates, and a length
 * over AGENT_MAX_FRAME is reported before any of the payload is waited for.
 *
 * Lifecycle: agent_rx_init(); then, repeatedly, agent_rx_space() +
 * agent_rx_commit() (or agent_rx_feed()) to add bytes and agent_rx_next()
 * until it says AGENT_RX_MORE. A payload pointer stays valid until the next
 * agent_rx_space()/agent_rx_feed(), which compacts the buffer.
 */
#ifndef HATCH_AGENT_FRAME_H
#define HATCH_AGENT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "hatchery/v1/vm.pb-c.h"

#define AGENT_HDR 4u
#define AGENT_MAX_FRAME 65536u /* IPC_MAX_MSG: the same bound both ways */

struct agent_rx {
	size_t used; /* bytes at the front already handed out */
	size_t have; /* bytes in buf */
	uint8_t buf[AGENT_HDR + AGENT_MAX_FRAME];
};

enum agent_rx_result {
	AGENT_RX_MORE,      /* no whole frame yet: read more */
	AGENT_RX_FRAME,     /* *payload, *len: the next frame's protobuf */
	AGENT_RX_TOO_LARGE, /* the next length field is over AGENT_MAX_FRAME;
			       the stream cannot be resynchronised (sticky) */
};

void agent_rx_init(struct agent_rx *rx);

/* Room for the next read(): returns where to put bytes and sets *room
 * (never 0 unless a too-large frame is pending). */
uint8_t *agent_rx_space(struct agent_rx *rx, size_t *room);
void agent_rx_commit(struct agent_rx *rx, size_t n);

/* Copy up to n bytes in; returns how many were taken. */
size_t agent_rx_feed(struct agent_rx *rx, const uint8_t *data, size_t n);

/* The next frame, if whole. *declared is the length field when the result
 * is AGENT_RX_TOO_LARGE. */
enum agent_rx_result agent_rx_next(struct agent_rx *rx, const uint8_t **payload,
				   size_t *len, uint32_t *declared);

/* Check a decoded request's fields before anything acts on it. Returns 0,
 * or a hatchery.v1.ErrorCode (INVALID_ARGUMENT) with msg filled. file_chunk
 * passes here: whether one is expected is the serve loop's state. */
int agent_request_check(const Hatchery__V1__VmRequest *req, char *msg, size_t msglen);

/* Limits from vm.proto. */
#define AGENT_MAX_OUTPUT_LIMIT (1ull << 30)
#define AGENT_DEFAULT_OUTPUT_LIMIT (16ull << 20)
#define AGENT_MAX_WRITE_SIZE (1ull << 30)
#define AGENT_DEFAULT_READ_MAX (64ull << 20)
#define AGENT_DEFAULT_TIMEOUT_MS 60000u
/* VmAgentResume.entropy: at least the 256 bits that make the kernel's
 * CRNG count as seeded; at most what one RNDADDENTROPY here carries. */
#define AGENT_RESUME_ENTROPY_MIN 32u
#define AGENT_RESUME_ENTROPY_MAX 256u

#endif
