/* fuzz_agent_requests.c - libFuzzer harness for what the Linux guest agent
 * does with the bytes the host sends (guest/linux/agent/frame.c): framing,
 * decoding each frame as a VmRequest, and the field checks.
 *
 * Input: byte 0 seeds the sizes of the reads the stream is cut into (as
 * read() on /dev/hvc0 would return it: one byte at a time, whole frames,
 * several at once); the rest is the stream. The frames struct agent_rx
 * hands out must be exactly those a plain walk of the stream finds, in
 * order, until a length over the limit, after which it must hand out
 * nothing. Every decoded request is checked and its strings and bytes
 * read, so ASan sees any bound protobuf-c or the checks got wrong. Build
 * with -DHATCH_FUZZ=ON (scripts/fuzz).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(const char *s)
{
	for (; s && *s; s++)
		sink ^= (uint8_t)*s;
}

static void touch_bytes(const ProtobufCBinaryData *d)
{
	for (size_t i = 0; i < d->len; i += 64)
		sink ^= d->data[i];
}

static void walk(const Hatchery__V1__VmRequest *r)
{
	switch (r->body_case) {
	case HATCHERY__V1__VM_REQUEST__BODY_EXEC:
		for (size_t i = 0; i < r->exec->n_argv; i++)
			touch(r->exec->argv[i]);
		for (size_t i = 0; i < r->exec->n_env; i++)
			touch(r->exec->env[i]);
		touch(r->exec->cwd);
		touch_bytes(&r->exec->stdin);
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE:
		touch(r->write_file->path);
		touch_bytes(&r->write_file->data);
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK:
		touch_bytes(&r->file_chunk->data);
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_READ_FILE:
		touch(r->read_file->path);
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR:
		touch(r->list_dir->path);
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_STAT:
		touch(r->stat->path);
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME:
		touch_bytes(&r->agent_resume->entropy);
		break;
	default:
		break;
	}
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] * 2654435761u + 1;
	data++;
	size--;
	static struct agent_rx rx;
	agent_rx_init(&rx);
	size_t fed = 0, expect = 0; /* expect: where the next frame starts */
	bool too_large = false;
	while (!too_large) {
		const uint8_t *payload;
		size_t len;
		uint32_t declared;
		enum agent_rx_result res = agent_rx_next(&rx, &payload, &len, &declared);
		if (res == AGENT_RX_MORE) {
			if (fed == size)
				break;
			seed = seed * 1103515245u + 12345u;
			size_t want = (seed >> 16) % 4 == 0 ? 1 : (seed >> 8) % 70000 + 1;
			if (want > size - fed)
				want = size - fed;
			fed += agent_rx_feed(&rx, data + fed, want);
			continue;
		}
		/* The reference: the stream walked directly. */
		if (size - expect < 4)
			abort();
		uint32_t n = le32(data + expect);
		if (res == AGENT_RX_TOO_LARGE) {
			if (n <= AGENT_MAX_FRAME || declared != n)
				abort();
			too_large = true;
			break;
		}
		if (n > AGENT_MAX_FRAME || len != n || size - expect - 4 < n ||
		    memcmp(payload, data + expect + 4, n) != 0)
			abort();
		expect += 4 + n;
		Hatchery__V1__VmRequest *r = hatchery__v1__vm_request__unpack(NULL, len, payload);
		if (!r)
			continue;
		char msg[512];
		int code = agent_request_check(r, msg, sizeof(msg));
		if (code != 0 && code != HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT)
			abort();
		if (code)
			touch(msg);
		/* resume.c copies the entropy into a buffer of the maximum's
		 * size: only the check stands between it and an overflow. */
		if (!code && r->body_case == HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME &&
		    (r->agent_resume->entropy.len < AGENT_RESUME_ENTROPY_MIN ||
		     r->agent_resume->entropy.len > AGENT_RESUME_ENTROPY_MAX))
			abort();
		walk(r);
		hatchery__v1__vm_request__free_unpacked(r, NULL);
	}
	/* Everything fed and nothing pending: the walk must agree that no
	 * whole frame is left. */
	if (!too_large && fed == size && size - expect >= 4 &&
	    le32(data + expect) <= AGENT_MAX_FRAME && size - expect - 4 >= le32(data + expect))
		abort();
	return 0;
}
