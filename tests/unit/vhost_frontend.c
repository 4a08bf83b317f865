/* vhost_frontend.c - see vhost_frontend.h. */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "testing.h"
#include "vhost_frontend.h"

/* ---- the frontend's side of the protocol ---------------------------- */

void fe_send(int s, uint32_t req, uint32_t flags, const void *payload,
		    uint32_t size, const int *fds, int nfds)
{
	uint8_t b[VHU_MAX_MSG + 64];
	struct vhu_hdr h = { req, VHU_VERSION | flags, size };
	memcpy(b, &h, sizeof(h));
	if (size)
		memcpy(b + sizeof(h), payload, size);
	size_t len = sizeof(h) + size;
	cr_assert_eq(vg_sendmsg(s, b, len, fds, nfds), (ssize_t)len, "send %u", req);
}

void fe_u64(int s, uint32_t req, uint32_t flags, uint64_t v)
{
	fe_send(s, req, flags, &v, 8, NULL, 0);
}

void fe_state(int s, uint32_t req, uint32_t index, uint32_t num)
{
	struct vhu_vring_state st = { index, num };
	fe_send(s, req, 0, &st, sizeof(st), NULL, 0);
}

/* Read a reply: header, then its payload into *p (up to cap). */
struct vhu_hdr fe_reply(int s, void *p, size_t cap)
{
	struct vhu_hdr h;
	cr_assert_eq(recv(s, &h, sizeof(h), MSG_WAITALL), (ssize_t)sizeof(h), "a reply");
	cr_assert(h.flags & VHU_FLAG_REPLY);
	cr_assert_leq(h.size, cap);
	if (h.size)
		cr_assert_eq(recv(s, p, h.size, MSG_WAITALL), (ssize_t)h.size);
	return h;
}

uint64_t fe_reply_u64(int s, uint32_t req)
{
	uint64_t v = 0;
	struct vhu_hdr h = fe_reply(s, &v, sizeof(v));
	cr_assert_eq(h.request, req);
	cr_assert_eq(h.size, 8);
	return v;
}

/* The handshake QEMU makes, in its order, with REPLY_ACK. */
void fe_handshake(int s)
{
	fe_send(s, VHU_GET_FEATURES, 0, NULL, 0, NULL, 0);
	uint64_t f = fe_reply_u64(s, VHU_GET_FEATURES);
	cr_assert(f & (1ull << VIRTIO_F_VERSION_1));
	cr_assert(f & (1ull << VHU_F_PROTOCOL_FEATURES));
	cr_assert_not(f & (1ull << VIRTIO_RING_F_INDIRECT_DESC));
	fe_send(s, VHU_GET_PROTOCOL_FEATURES, 0, NULL, 0, NULL, 0);
	uint64_t pf = fe_reply_u64(s, VHU_GET_PROTOCOL_FEATURES);
	cr_assert(pf & (1ull << VHU_PROTOCOL_F_REPLY_ACK));
	fe_u64(s, VHU_SET_PROTOCOL_FEATURES, 0,
	       1ull << VHU_PROTOCOL_F_REPLY_ACK | 1ull << VHU_PROTOCOL_F_CONFIG);
	fe_send(s, VHU_SET_OWNER, VHU_FLAG_NEED_REPLY, NULL, 0, NULL, 0);
	cr_assert_eq(fe_reply_u64(s, VHU_SET_OWNER), 0);
	fe_u64(s, VHU_SET_FEATURES, VHU_FLAG_NEED_REPLY,
	       1ull << VIRTIO_F_VERSION_1 | 1ull << VHU_F_PROTOCOL_FEATURES |
		       1ull << VIRTIO_BLK_F_FLUSH);
	cr_assert_eq(fe_reply_u64(s, VHU_SET_FEATURES), 0);
}

void fe_mem_table(int s, const struct vg *g)
{
	struct vhu_mem_table t = { .nregions = 1, .regions = { vg_region(g) } };
	fe_send(s, VHU_SET_MEM_TABLE, VHU_FLAG_NEED_REPLY, &t, 8 + 32, &g->fd, 1);
	cr_assert_eq(fe_reply_u64(s, VHU_SET_MEM_TABLE), 0);
}

/* Ring 0 with num entries, its call and kick eventfds; enabled. */
void fe_ring(int s, uint16_t num, int call, int kick)
{
	fe_state(s, VHU_SET_VRING_NUM, 0, num);
	fe_state(s, VHU_SET_VRING_BASE, 0, 0);
	struct vhu_vring_addr a = vg_addr(0);
	fe_send(s, VHU_SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0);
	uint64_t idx = 0;
	fe_send(s, VHU_SET_VRING_CALL, 0, &idx, 8, &call, 1);
	fe_send(s, VHU_SET_VRING_KICK, VHU_FLAG_NEED_REPLY, &idx, 8, &kick, 1);
	cr_assert_eq(fe_reply_u64(s, VHU_SET_VRING_KICK), 0);
	struct vhu_vring_state en = { 0, 1 };
	fe_send(s, VHU_SET_VRING_ENABLE, VHU_FLAG_NEED_REPLY, &en, sizeof(en), NULL, 0);
	cr_assert_eq(fe_reply_u64(s, VHU_SET_VRING_ENABLE), 0);
}

/* ---- the guest's side ------------------------------------------------ */

/* A three-descriptor request at descriptors d, d+1, d+2: header, data
 * (writable for IN and GET_ID), status; buffers at pages p, p+1, p+2. */
void blk_req(struct vg *g, uint16_t d, unsigned p, uint32_t type,
		    uint64_t sector, uint32_t len)
{
	struct virtio_blk_outhdr h = { .type = type, .sector = sector };
	memcpy(vg_ptr(g, GPA(p)), &h, sizeof(h));
	*(uint8_t *)vg_ptr(g, GPA(p + 2)) = 0xff;
	bool in = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
	uint16_t w = in ? VRING_DESC_F_WRITE : 0;
	vg_desc(g, d, GPA(p), sizeof(h), VRING_DESC_F_NEXT, d + 1);
	vg_desc(g, d + 1, GPA(p + 1), len, VRING_DESC_F_NEXT | w, d + 2);
	vg_desc(g, d + 2, GPA(p + 2), 1, VRING_DESC_F_WRITE, 0);
	vg_publish(g, d);
}

void kick(int fd)
{
	uint64_t one = 1;
	cr_assert_eq(write(fd, &one, 8), 8);
}

bool wait_fd(int fd, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	if (poll(&p, 1, (int)t_ms((unsigned)ms)) != 1)
		return false;
	uint64_t v;
	return read(fd, &v, 8) == 8;
}

