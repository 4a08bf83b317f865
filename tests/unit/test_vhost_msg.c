/* test_vhost_msg.c - the vhost-user wire format (vhost/user_msg.c): every
 * request's size and fd-count rule, truncated and oversize messages,
 * unknown requests, wrong versions; and the socket side (user_msg_io.c)
 * on a socketpair: fds received, fds closed on every refusal. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchery/cleanup.h"
#include "user_msg.h"
#include "vhost_guest.h"

TestSuite(vhost_msg, .timeout = 10);

static uint8_t buf[VHU_MAX_MSG + 64];

/* Header + `size` payload bytes copied from payload (or zeros). */
static size_t mk(uint32_t req, uint32_t flags, uint32_t size, const void *payload)
{
	memset(buf, 0, sizeof(buf));
	struct vhu_hdr h = { req, flags, size };
	memcpy(buf, &h, sizeof(h));
	if (payload)
		memcpy(buf + VHU_HDR_SIZE, payload, size);
	return VHU_HDR_SIZE + size;
}

static int dec(uint32_t req, uint32_t size, const void *payload, int nfds,
	       struct vhu_msg *m, struct hatch_err *e)
{
	size_t len = mk(req, VHU_VERSION, size, payload);
	return vhu_msg_decode(buf, len, nfds, m, e);
}

/* Each fixed-size request: accepted at its size with its fd count,
 * refused one byte shorter and one byte longer. */
static const struct {
	uint32_t req, size;
	int nfds;
} fixed[] = {
	{ VHU_GET_FEATURES, 0, 0 },      { VHU_SET_FEATURES, 8, 0 },
	{ VHU_SET_OWNER, 0, 0 },         { VHU_RESET_OWNER, 0, 0 },
	{ VHU_SET_VRING_NUM, 8, 0 },     { VHU_SET_VRING_ADDR, 40, 0 },
	{ VHU_SET_VRING_BASE, 8, 0 },    { VHU_GET_VRING_BASE, 8, 0 },
	{ VHU_SET_VRING_KICK, 8, 1 },    { VHU_SET_VRING_CALL, 8, 1 },
	{ VHU_SET_VRING_ERR, 8, 1 },     { VHU_GET_PROTOCOL_FEATURES, 0, 0 },
	{ VHU_SET_PROTOCOL_FEATURES, 8, 0 }, { VHU_GET_QUEUE_NUM, 0, 0 },
	{ VHU_SET_VRING_ENABLE, 8, 0 },  { VHU_GET_MAX_MEM_SLOTS, 0, 0 },
	{ VHU_ADD_MEM_REG, 40, 1 },      { VHU_REM_MEM_REG, 40, 0 },
};

Test(vhost_msg, fixed_sizes_and_fds)
{
	uint8_t zero[64] = { 0 };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(fixed); i++) {
		struct vhu_msg m;
		struct hatch_err e = { 0 };
		uint32_t sz = fixed[i].size;
		const char *name = vhu_request_name(fixed[i].req);
		cr_expect_eq(dec(fixed[i].req, sz, zero, fixed[i].nfds, &m, &e), 0,
			     "%s: %s", name, e.msg);
		cr_expect_eq(m.nfds, fixed[i].nfds);
		if (sz > 0)
			cr_expect_eq(dec(fixed[i].req, sz - 1, zero, fixed[i].nfds, &m, &e), -1,
				     "%s short", name);
		cr_expect_eq(dec(fixed[i].req, sz + 1, zero, fixed[i].nfds, &m, &e), -1,
			     "%s long", name);
		int extra = fixed[i].req == VHU_REM_MEM_REG ? 2 : 1; /* 0 or 1 */
		cr_expect_eq(dec(fixed[i].req, sz, zero, fixed[i].nfds + extra, &m, &e), -1,
			     "%s one fd too many", name);
		cr_expect(strstr(e.msg, "fds"), "%s: %s", name, e.msg);
		if (fixed[i].nfds)
			cr_expect_eq(dec(fixed[i].req, sz, zero, 0, &m, &e), -1,
				     "%s without its fd", name);
	}
}

Test(vhost_msg, vring_fd_nofd_bit)
{
	uint32_t reqs[] = { VHU_SET_VRING_KICK, VHU_SET_VRING_CALL, VHU_SET_VRING_ERR };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(reqs); i++) {
		struct vhu_msg m;
		struct hatch_err e = { 0 };
		uint64_t v = 3 | VHU_VRING_NOFD;
		cr_expect_eq(dec(reqs[i], 8, &v, 0, &m, &e), 0, "%s", e.msg);
		cr_expect_eq(m.p.u64, v);
		cr_expect_eq(dec(reqs[i], 8, &v, 1, &m, &e), -1, "NOFD and an fd");
		v = 3 | (1u << 9); /* reserved bit */
		cr_expect_eq(dec(reqs[i], 8, &v, 1, &m, &e), -1);
		cr_expect(strstr(e.msg, "reserved"), "%s", e.msg);
	}
}

Test(vhost_msg, rem_mem_reg_takes_zero_or_one_fd)
{
	uint8_t zero[40] = { 0 };
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	cr_expect_eq(dec(VHU_REM_MEM_REG, 40, zero, 0, &m, &e), 0);
	cr_expect_eq(dec(VHU_REM_MEM_REG, 40, zero, 1, &m, &e), 0);
	cr_expect_eq(dec(VHU_REM_MEM_REG, 40, zero, 2, &m, &e), -1);
}

Test(vhost_msg, mem_table_one_fd_per_region)
{
	/* Room past the table: one case sends a region more than it counts. */
	union {
		struct vhu_mem_table t;
		uint8_t room[sizeof(struct vhu_mem_table) + 64];
	} u = { 0 };
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	for (uint32_t n = 1; n <= VHU_MAX_MEM_REGIONS; n++) {
		u.t.nregions = n;
		u.t.regions[n - 1].gpa = 0x1000 * n;
		uint32_t sz = 8 + 32 * n;
		cr_expect_eq(dec(VHU_SET_MEM_TABLE, sz, &u.t, (int)n, &m, &e), 0, "%u: %s", n, e.msg);
		cr_expect_eq(m.p.mem.nregions, n);
		cr_expect_eq(m.p.mem.regions[n - 1].gpa, 0x1000 * n);
		cr_expect_eq(dec(VHU_SET_MEM_TABLE, sz, &u.t, (int)n - 1, &m, &e), -1);
		cr_expect_eq(dec(VHU_SET_MEM_TABLE, sz + 32, &u.t, (int)n, &m, &e), -1);
		cr_expect_eq(dec(VHU_SET_MEM_TABLE, sz - 1, &u.t, (int)n, &m, &e), -1);
	}
	u.t.nregions = 0;
	cr_expect_eq(dec(VHU_SET_MEM_TABLE, 8, &u.t, 0, &m, &e), -1);
	u.t.nregions = VHU_MAX_MEM_REGIONS + 1;
	cr_expect_eq(dec(VHU_SET_MEM_TABLE, 8 + 32 * 8, &u.t, 8, &m, &e), -1);
	cr_expect(strstr(e.msg, "regions"), "%s", e.msg);
	cr_expect_eq(dec(VHU_SET_MEM_TABLE, 4, &u.t, 0, &m, &e), -1, "shorter than its count");
}

Test(vhost_msg, config_bounded)
{
	struct vhu_config c = { .offset = 0, .size = 60 };
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	cr_expect_eq(dec(VHU_GET_CONFIG, 12 + 60, &c, 0, &m, &e), 0, "%s", e.msg);
	cr_expect_eq(m.p.config.size, 60);
	cr_expect_eq(dec(VHU_SET_CONFIG, 12 + 60, &c, 0, &m, &e), 0, "%s", e.msg);
	cr_expect_eq(dec(VHU_GET_CONFIG, 12 + 59, &c, 0, &m, &e), -1);
	cr_expect_eq(dec(VHU_GET_CONFIG, 11, &c, 0, &m, &e), -1);
	cr_expect_eq(dec(VHU_GET_CONFIG, 12 + 60, &c, 1, &m, &e), -1);
	c.size = VHU_MAX_CONFIG_SIZE + 1;
	cr_expect_eq(dec(VHU_GET_CONFIG, 12, &c, 0, &m, &e), -1);
	c.size = VHU_MAX_CONFIG_SIZE;
	cr_expect_eq(dec(VHU_SET_CONFIG, VHU_MAX_PAYLOAD, &c, 0, &m, &e), 0, "%s", e.msg);
}

Test(vhost_msg, truncated_oversize_and_length_mismatch)
{
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	mk(VHU_GET_FEATURES, VHU_VERSION, 0, NULL);
	for (size_t len = 0; len < VHU_HDR_SIZE; len++)
		cr_expect_eq(vhu_msg_decode(buf, len, 0, &m, &e), -1, "len %zu", len);
	mk(VHU_SET_FEATURES, VHU_VERSION, 8, NULL);
	cr_expect_eq(vhu_msg_decode(buf, VHU_HDR_SIZE + 4, 0, &m, &e), -1);
	cr_expect_eq(vhu_msg_decode(buf, VHU_HDR_SIZE + 9, 0, &m, &e), -1);
	mk(VHU_SET_FEATURES, VHU_VERSION, VHU_MAX_PAYLOAD + 1, NULL);
	cr_expect_eq(vhu_msg_decode(buf, VHU_HDR_SIZE + VHU_MAX_PAYLOAD + 1, 0, &m, &e), -1);
	cr_expect(strstr(e.msg, "at most"), "%s", e.msg);
	mk(VHU_SET_FEATURES, VHU_VERSION, UINT32_MAX, NULL);
	cr_expect_eq(vhu_msg_decode(buf, VHU_HDR_SIZE + 8, 0, &m, &e), -1);
}

Test(vhost_msg, version_and_flags)
{
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	uint32_t bad[] = { 0, 2, 3, VHU_VERSION | VHU_FLAG_REPLY, VHU_VERSION | (1u << 4),
			   VHU_VERSION | 0x80000000u };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(bad); i++) {
		size_t len = mk(VHU_GET_FEATURES, bad[i], 0, NULL);
		cr_expect_eq(vhu_msg_decode(buf, len, 0, &m, &e), -1, "flags 0x%x", bad[i]);
	}
	size_t len = mk(VHU_GET_FEATURES, VHU_VERSION | VHU_FLAG_NEED_REPLY, 0, NULL);
	cr_expect_eq(vhu_msg_decode(buf, len, 0, &m, &e), 0, "%s", e.msg);
	cr_expect(m.hdr.flags & VHU_FLAG_NEED_REPLY);
}

Test(vhost_msg, unknown_and_unimplemented_requests)
{
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	uint32_t reqs[] = { 0, VHU_SET_LOG_BASE, VHU_SET_LOG_FD, 22, 31, 34, 40, 41,
			    VHU_REQUEST_MAX, 1000, UINT32_MAX };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(reqs); i++) {
		size_t len = mk(reqs[i], VHU_VERSION, 0, NULL);
		cr_expect_eq(vhu_msg_decode(buf, len, 0, &m, &e), -1, "request %u", reqs[i]);
		cr_expect(strstr(e.msg, "not supported"), "%s", e.msg);
	}
	size_t len = mk(VHU_SET_LOG_BASE, VHU_VERSION, 0, NULL);
	vhu_msg_decode(buf, len, 0, &m, &e);
	cr_expect(strstr(e.msg, "SET_LOG_BASE"), "%s", e.msg);
}

Test(vhost_msg, encode_reply_round_trip)
{
	struct vhu_msg req = { .hdr = { VHU_GET_FEATURES, VHU_VERSION, 0 } }, rep;
	vhu_msg_reply_u64(&rep, &req, 0x123456789ull);
	uint8_t out[VHU_MAX_MSG];
	size_t n = vhu_msg_encode(&rep, out, sizeof(out));
	cr_assert_eq(n, VHU_HDR_SIZE + 8);
	struct vhu_hdr h;
	memcpy(&h, out, sizeof(h));
	cr_expect_eq(h.request, VHU_GET_FEATURES);
	cr_expect_eq(h.flags, VHU_VERSION | VHU_FLAG_REPLY);
	cr_expect_eq(h.size, 8);
	uint64_t v;
	memcpy(&v, out + VHU_HDR_SIZE, 8);
	cr_expect_eq(v, 0x123456789ull);
	cr_expect_eq(vhu_msg_encode(&rep, out, VHU_HDR_SIZE + 7), 0, "too small a buffer");
	rep.hdr.size = VHU_MAX_PAYLOAD + 1;
	cr_expect_eq(vhu_msg_encode(&rep, out, sizeof(out)), 0);
}

/* ---- the socket side ------------------------------------------------ */

static void send_with_fds(int sock, const void *b, size_t len, const int *fds, int nfds)
{
	cr_assert_eq(vg_sendmsg(sock, b, len, fds, nfds), (ssize_t)len);
}

Test(vhost_msg, recv_kick_with_fd_and_send_reply)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	uint64_t v = 0;
	size_t len = mk(VHU_SET_VRING_KICK, VHU_VERSION, 8, &v);
	send_with_fds(sv[0], buf, len, &p[0], 1);
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_msg_recv(sv[1], &m, &e), 1, "%s", e.msg);
	cr_expect_eq(m.hdr.request, VHU_SET_VRING_KICK);
	cr_assert_eq(m.nfds, 1);
	cr_expect(fcntl(m.fds[0], F_GETFD) & FD_CLOEXEC);
	vhu_msg_close_fds(&m);

	struct vhu_msg rep;
	vhu_msg_reply_u64(&rep, &m, 7);
	cr_assert_eq(vhu_msg_send(sv[1], &rep), 0);
	uint8_t in[20];
	cr_assert_eq(read(sv[0], in, sizeof(in)), 20);
	close(sv[0]);
	cr_expect_eq(vhu_msg_recv(sv[1], &m, &e), 0, "clean end of stream");
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}

/* Every refusal closes the fds that came with the message. */
Test(vhost_msg, recv_refusals_close_fds)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	int fds[64];
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	for (int i = 0; i < 64; i++)
		fds[i] = p[0];
	int before = vg_open_fds();
	struct vhu_msg m;
	struct hatch_err e = { 0 };
	uint64_t v = 0;

	/* An fd with a request that takes none. */
	size_t len = mk(VHU_SET_FEATURES, VHU_VERSION, 8, &v);
	send_with_fds(sv[0], buf, len, fds, 1);
	cr_expect_eq(vhu_msg_recv(sv[1], &m, &e), -1);
	cr_expect_eq(vg_open_fds(), before, "%s", e.msg);

	/* An fd flood: more than the control buffer holds (MSG_CTRUNC).
	 * Refused from the header: the body stays unread, the stream is out
	 * of step (a backend closes it), so each case has a fresh pair. */
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	len = mk(VHU_SET_VRING_KICK, VHU_VERSION, 8, &v);
	send_with_fds(sv[0], buf, len, fds, 64);
	cr_expect_eq(vhu_msg_recv(sv[1], &m, &e), -1);
	cr_expect(strstr(e.msg, "fds"), "%s", e.msg);
	cr_expect_eq(vg_open_fds(), before);

	/* Oversize: refused from the header, its fd closed. */
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	len = mk(VHU_SET_FEATURES, VHU_VERSION, 100000, NULL);
	send_with_fds(sv[0], buf, VHU_HDR_SIZE, fds, 1);
	cr_expect_eq(vhu_msg_recv(sv[1], &m, &e), -1);
	cr_expect(strstr(e.msg, "at most"), "%s", e.msg);
	cr_expect_eq(vg_open_fds(), before);
	close(sv[0]);
	close(sv[1]);

	/* A header cut short by the peer's close. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	before = vg_open_fds();
	send_with_fds(sv[0], buf, 5, fds, 1);
	close(sv[0]);
	cr_expect_eq(vhu_msg_recv(sv[1], &m, &e), -1);
	cr_expect_eq(vg_open_fds(), before - 1, "only sv[0] is gone");
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}
