/* backend_msg.c - the backend's answer to each vhost-user request: a
 * table from request to handler. The decoder (user_msg.c) has already
 * checked sizes and fd counts; what is left here is the state: which
 * ring, which features, what the memory table holds. */
#include <string.h>

#include <linux/virtio_config.h>

#include "backend_priv.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

typedef int (*handler_fn)(struct vhu_backend *b, struct vhu_msg *m,
			  struct vhu_msg *reply, struct hatch_err *err);

static uint64_t offered_features(const struct vhu_backend *b)
{
	return vhu_blk_features(b->blk) | 1ull << VHU_F_PROTOCOL_FEATURES;
}

static const uint64_t offered_protocol =
	1ull << VHU_PROTOCOL_F_MQ | 1ull << VHU_PROTOCOL_F_REPLY_ACK |
	1ull << VHU_PROTOCOL_F_CONFIG | 1ull << VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS;

bool vhu_backend_has(const struct vhu_backend *b, unsigned protocol_feature)
{
	return b->protocol_features & (1ull << protocol_feature);
}

void vhu_backend_init(struct vhu_backend *b, struct vhu_blk *blk)
{
	memset(b, 0, sizeof(*b));
	b->blk = blk;
	vhu_mem_init(&b->mem);
	for (unsigned q = 0; q < VHU_BLK_QUEUES; q++)
		vhu_vring_init(&b->vr[q], &b->mem);
}

void vhu_backend_reset(struct vhu_backend *b)
{
	for (unsigned q = 0; q < VHU_BLK_QUEUES; q++)
		vhu_vring_close(&b->vr[q]);
	vhu_mem_clear(&b->mem);
	vhu_backend_init(b, b->blk);
}

/* The ring a request names, or NULL with *err set. */
static struct vhu_vring *ring(struct vhu_backend *b, uint32_t index,
			      struct hatch_err *err)
{
	if (index >= VHU_BLK_QUEUES) {
		hatch_err_set(err, E(INVALID_ARGUMENT), 0,
			      "ring %u (the device has %u)", index, VHU_BLK_QUEUES);
		return NULL;
	}
	return &b->vr[index];
}

/* ---- features -------------------------------------------------------- */

static int get_features(struct vhu_backend *b, struct vhu_msg *m,
			struct vhu_msg *reply, struct hatch_err *err)
{
	vhu_msg_reply_u64(reply, m, offered_features(b));
	return 1;
}

static int set_features(struct vhu_backend *b, struct vhu_msg *m,
			struct vhu_msg *reply, struct hatch_err *err)
{
	uint64_t v = m->p.u64;
	if (v & ~offered_features(b))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "features 0x%llx not offered",
				     (unsigned long long)(v & ~offered_features(b)));
	if (!(v & (1ull << VIRTIO_F_VERSION_1)))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "VIRTIO_F_VERSION_1 is required (no legacy devices)");
	b->features = v;
	/* Without protocol features a ring is enabled from the start. */
	if (!(v & (1ull << VHU_F_PROTOCOL_FEATURES)))
		for (unsigned q = 0; q < VHU_BLK_QUEUES; q++)
			vhu_vring_set_enable(&b->vr[q], true);
	return 0;
}

static int get_protocol_features(struct vhu_backend *b, struct vhu_msg *m,
				 struct vhu_msg *reply, struct hatch_err *err)
{
	vhu_msg_reply_u64(reply, m, offered_protocol);
	return 1;
}

static int set_protocol_features(struct vhu_backend *b, struct vhu_msg *m,
				 struct vhu_msg *reply, struct hatch_err *err)
{
	if (m->p.u64 & ~offered_protocol)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "protocol features 0x%llx not offered",
				     (unsigned long long)(m->p.u64 & ~offered_protocol));
	b->protocol_features = m->p.u64;
	return 0;
}

static int get_u64_answer(struct vhu_backend *b, struct vhu_msg *m,
			  struct vhu_msg *reply, struct hatch_err *err)
{
	uint64_t v = m->hdr.request == VHU_GET_QUEUE_NUM ? VHU_BLK_QUEUES
							 : VHU_MEM_MAX_REGIONS;
	vhu_msg_reply_u64(reply, m, v);
	return 1;
}

static int set_owner(struct vhu_backend *b, struct vhu_msg *m,
		     struct vhu_msg *reply, struct hatch_err *err)
{
	b->owner = true;
	return 0;
}

static int reset_owner(struct vhu_backend *b, struct vhu_msg *m,
		       struct vhu_msg *reply, struct hatch_err *err)
{
	vhu_backend_reset(b);
	return 0;
}

/* ---- memory ------------------------------------------------------------ */

/* The table changed: started rings look their areas up again (a ring
 * whose memory went away stops). */
static int remap_rings(struct vhu_backend *b, struct hatch_err *err)
{
	for (unsigned q = 0; q < VHU_BLK_QUEUES; q++)
		if (vhu_vring_remap(&b->vr[q], err) < 0)
			return hatch_err_wrap(err, "after the memory table changed");
	return 0;
}

static int set_mem_table(struct vhu_backend *b, struct vhu_msg *m,
			 struct vhu_msg *reply, struct hatch_err *err)
{
	if (vhu_mem_replace(&b->mem, &m->p.mem, m->fds, err) < 0)
		return -1;
	return remap_rings(b, err);
}

static int add_mem_reg(struct vhu_backend *b, struct vhu_msg *m,
		       struct vhu_msg *reply, struct hatch_err *err)
{
	return vhu_mem_add(&b->mem, &m->p.single.region, m->fds[0], err);
}

static int rem_mem_reg(struct vhu_backend *b, struct vhu_msg *m,
		       struct vhu_msg *reply, struct hatch_err *err)
{
	if (vhu_mem_remove(&b->mem, &m->p.single.region, err) < 0)
		return -1;
	return remap_rings(b, err);
}

/* ---- rings ------------------------------------------------------------- */

static int set_vring(struct vhu_backend *b, struct vhu_msg *m,
		     struct vhu_msg *reply, struct hatch_err *err)
{
	uint32_t index = m->hdr.request == VHU_SET_VRING_ADDR ? m->p.addr.index
							      : m->p.state.index;
	struct vhu_vring *vr = ring(b, index, err);
	if (!vr)
		return -1;
	switch (m->hdr.request) {
	case VHU_SET_VRING_NUM:
		return vhu_vring_set_num(vr, m->p.state.num, err);
	case VHU_SET_VRING_ADDR:
		return vhu_vring_set_addr(vr, &m->p.addr, err);
	case VHU_SET_VRING_BASE:
		return vhu_vring_set_base(vr, m->p.state.num, err);
	}
	if (m->p.state.num > 1)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "SET_VRING_ENABLE %u", m->p.state.num);
	if (!(b->features & (1ull << VHU_F_PROTOCOL_FEATURES)))
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "SET_VRING_ENABLE without protocol features");
	vhu_vring_set_enable(vr, m->p.state.num == 1);
	return 0;
}

static int get_vring_base(struct vhu_backend *b, struct vhu_msg *m,
			  struct vhu_msg *reply, struct hatch_err *err)
{
	struct vhu_vring *vr = ring(b, m->p.state.index, err);
	if (!vr)
		return -1;
	uint16_t base = vhu_vring_stop(vr);
	vhu_msg_reply_init(reply, m, sizeof(struct vhu_vring_state));
	reply->p.state = (struct vhu_vring_state){ m->p.state.index, base };
	return 1;
}

/* SET_VRING_KICK/CALL/ERR: the fd (if any) is taken from m. A kick fd
 * starts the ring. */
static int set_vring_fd(struct vhu_backend *b, struct vhu_msg *m,
			struct vhu_msg *reply, struct hatch_err *err)
{
	struct vhu_vring *vr = ring(b, m->p.u64 & VHU_VRING_IDX_MASK, err);
	if (!vr)
		return -1;
	bool nofd = m->p.u64 & VHU_VRING_NOFD;
	if (m->hdr.request == VHU_SET_VRING_KICK && nofd)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "SET_VRING_KICK without an fd (polling) is not supported");
	int fd = nofd ? -1 : steal_fd(&m->fds[0]);
	m->nfds = 0;
	if (m->hdr.request == VHU_SET_VRING_CALL) {
		vhu_vring_set_call(vr, fd);
		return 0;
	}
	if (m->hdr.request == VHU_SET_VRING_ERR) {
		vhu_vring_set_err(vr, fd);
		return 0;
	}
	vhu_vring_set_kick(vr, fd);
	return vr->started ? 0 : vhu_vring_start(vr, err);
}

/* ---- config space -------------------------------------------------------- */

static int get_config(struct vhu_backend *b, struct vhu_msg *m,
		      struct vhu_msg *reply, struct hatch_err *err)
{
	const struct vhu_config *c = &m->p.config;
	if (c->offset > VHU_MAX_CONFIG_SIZE || c->size > VHU_MAX_CONFIG_SIZE - c->offset)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "config space bytes %u+%u (it has %u)", c->offset,
				     c->size, VHU_MAX_CONFIG_SIZE);
	/* Past the struct is zeros: fields of features we do not offer. */
	uint8_t space[VHU_MAX_CONFIG_SIZE] = { 0 };
	struct virtio_blk_config cfg;
	vhu_blk_config(b->blk, &cfg);
	memcpy(space, &cfg, sizeof(cfg));
	vhu_msg_reply_init(reply, m, m->hdr.size);
	reply->p.config.offset = c->offset;
	reply->p.config.size = c->size;
	reply->p.config.flags = c->flags;
	memcpy(reply->p.config.payload, space + c->offset, c->size);
	return 1;
}

static int set_config(struct vhu_backend *b, struct vhu_msg *m,
		      struct vhu_msg *reply, struct hatch_err *err)
{
	/* Writable blk config fields (wce) need VIRTIO_BLK_F_CONFIG_WCE,
	 * which is not offered. */
	return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
			     "the virtio-blk config space is read-only here");
}

static const handler_fn handlers[VHU_REQUEST_MAX] = {
	[VHU_GET_FEATURES] = get_features,
	[VHU_SET_FEATURES] = set_features,
	[VHU_SET_OWNER] = set_owner,
	[VHU_RESET_OWNER] = reset_owner,
	[VHU_SET_MEM_TABLE] = set_mem_table,
	[VHU_SET_VRING_NUM] = set_vring,
	[VHU_SET_VRING_ADDR] = set_vring,
	[VHU_SET_VRING_BASE] = set_vring,
	[VHU_GET_VRING_BASE] = get_vring_base,
	[VHU_SET_VRING_KICK] = set_vring_fd,
	[VHU_SET_VRING_CALL] = set_vring_fd,
	[VHU_SET_VRING_ERR] = set_vring_fd,
	[VHU_GET_PROTOCOL_FEATURES] = get_protocol_features,
	[VHU_SET_PROTOCOL_FEATURES] = set_protocol_features,
	[VHU_GET_QUEUE_NUM] = get_u64_answer,
	[VHU_SET_VRING_ENABLE] = set_vring,
	[VHU_GET_CONFIG] = get_config,
	[VHU_SET_CONFIG] = set_config,
	[VHU_GET_MAX_MEM_SLOTS] = get_u64_answer,
	[VHU_ADD_MEM_REG] = add_mem_reg,
	[VHU_REM_MEM_REG] = rem_mem_reg,
};

int vhu_backend_handle(struct vhu_backend *b, struct vhu_msg *m,
		       struct vhu_msg *reply, struct hatch_err *err)
{
	uint32_t req = m->hdr.request;
	if (req >= VHU_REQUEST_MAX || !handlers[req]) /* the decoder lets none through */
		return hatch_err_set(err, E(INTERNAL), 0, "no handler for request %u", req);
	int r = handlers[req](b, m, reply, err);
	if (r < 0)
		hatch_err_wrap(err, "%s", vhu_request_name(req));
	return r;
}
