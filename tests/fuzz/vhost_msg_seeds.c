/* vhost_msg_seeds.c - writes a starting corpus for fuzz_vhost_msg into
 * DIR: one valid message for each request the decoder accepts, each file
 * prefixed with the harness's fd-count byte. Usage: vhost_msg_seeds DIR */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user_msg.h"

static void save(const char *dir, const char *name, int nfds, const struct vhu_msg *m)
{
	uint8_t buf[1 + VHU_MAX_MSG];
	size_t n = vhu_msg_encode(m, buf + 1, sizeof(buf) - 1);
	buf[0] = (uint8_t)nfds;
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!n || !f || fwrite(buf, 1, n + 1, f) != n + 1 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static struct vhu_msg msg(uint32_t req, uint32_t size)
{
	struct vhu_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr = (struct vhu_hdr){ req, VHU_VERSION, size };
	return m;
}

static bool try_save(const char *dir, uint32_t req, uint32_t size)
{
	struct vhu_msg m = msg(req, size), out;
	uint8_t buf[VHU_MAX_MSG];
	size_t n = vhu_msg_encode(&m, buf, sizeof(buf));
	for (int nfds = 0; nfds <= (int)VHU_MAX_FDS; nfds++) {
		if (vhu_msg_decode(buf, n, nfds, &out, NULL) == 0) {
			save(dir, vhu_request_name(req), nfds, &m);
			return true;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: vhost_msg_seeds DIR\n");
		return 2;
	}
	const char *d = argv[1];
	/* For every request number, the first (size, fd count) with a zeroed
	 * payload the decoder accepts: the rules live in the decoder alone. */
	for (uint32_t req = 0; req < VHU_REQUEST_MAX; req++)
		for (uint32_t size = 0; size <= VHU_MAX_PAYLOAD; size++)
			if (try_save(d, req, size))
				break;
	struct vhu_msg m = msg(VHU_SET_VRING_CALL, 8);
	m.p.u64 = VHU_VRING_NOFD;
	save(d, "SET_VRING_CALL-nofd", 0, &m);
	m = msg(VHU_SET_MEM_TABLE, 8 + 32 * 3);
	m.p.mem.nregions = 3;
	save(d, "SET_MEM_TABLE", 3, &m);
	m = msg(VHU_GET_CONFIG, VHU_CONFIG_HDR_SIZE + 60);
	m.p.config.size = 60;
	save(d, "GET_CONFIG", 0, &m);
	m = msg(VHU_SET_CONFIG, VHU_MAX_PAYLOAD);
	m.p.config.size = VHU_MAX_CONFIG_SIZE;
	save(d, "SET_CONFIG-max", 0, &m);
	m = msg(VHU_GET_FEATURES, 0);
	m.hdr.flags |= VHU_FLAG_NEED_REPLY;
	save(d, "GET_FEATURES-need-reply", 0, &m);
	return 0;
}
