/* fuzz_vhost_msg.c - libFuzzer harness for the vhost-user message decoder
 * (vhost/user_msg.c).
 *
 * The input's first byte is the number of fds the message "came with"
 * (0..VHU_MAX_FDS + 1, so one count over the limit is tried too); the rest
 * is the message, header and payload. A message the decoder accepts must
 * keep its promises: a payload no larger than VHU_MAX_PAYLOAD, the fd
 * count recorded, and encoding it back gives the input bytes exactly (the
 * decoder neither lost nor invented any). Build with -DHATCH_FUZZ=ON
 * (scripts/fuzz).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "user_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int nfds = data[0] % (VHU_MAX_FDS + 2);
	struct vhu_msg m;
	struct hatch_err err = { 0 };
	if (vhu_msg_decode(data + 1, size - 1, nfds, &m, &err) < 0) {
		if (!err.msg[0])
			__builtin_trap(); /* every refusal says why */
		return 0;
	}
	if (m.hdr.size > VHU_MAX_PAYLOAD || m.nfds != nfds)
		__builtin_trap();
	uint8_t out[VHU_MAX_MSG];
	size_t n = vhu_msg_encode(&m, out, sizeof(out));
	if (n != size - 1 || memcmp(out, data + 1, n) != 0)
		__builtin_trap();
	return 0;
}
