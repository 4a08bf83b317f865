/* backend_priv.h - the backend's state, shared by its message handlers
 * (backend_msg.c) and its loop (backend.c). Not a public header. */
#ifndef HATCHERY_VHOST_BACKEND_PRIV_H
#define HATCHERY_VHOST_BACKEND_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "mem.h"
#include "user_msg.h"
#include "vring.h"

struct vhu_backend {
	struct vhu_blk *blk;              /* borrowed */
	struct vhu_mem mem;
	struct vhu_vring vr[VHU_BLK_QUEUES];
	uint64_t features;                /* as SET_FEATURES acked them */
	uint64_t protocol_features;
	bool owner;
	struct vmp_vq_elem elem;          /* the chain being served */
};

void vhu_backend_init(struct vhu_backend *b, struct vhu_blk *blk);

/* Drop everything the connection set up: rings (and their fds), memory,
 * features. */
void vhu_backend_reset(struct vhu_backend *b);

/* Handle one decoded request. Returns 0 (done, no reply of its own),
 * 1 (*reply filled: send it), or -1 with *err set. Takes the fds it keeps
 * out of m (m->nfds lowered); the caller closes the rest. */
int vhu_backend_handle(struct vhu_backend *b, struct vhu_msg *m,
		       struct vhu_msg *reply, struct hatch_err *err);

bool vhu_backend_has(const struct vhu_backend *b, unsigned protocol_feature);

#endif
