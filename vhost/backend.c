/* backend.c - the backend's loop: messages from the frontend, kicks from
 * the guest, requests served. See backend.h. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend_priv.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Serve the available chains of a ready ring, at most a queue's worth
 * (a guest that keeps adding chains must not keep the frontend's messages
 * waiting), then notify once. Returns true when chains may be left. */
static bool serve_ring(struct vhu_backend *b, unsigned q)
{
	struct vhu_vring *vr = &b->vr[q];
	bool was_broken = vr->vq.broken, pushed = false;
	unsigned budget = vr->num;
	int r = 0;
	while (budget && (r = vhu_vring_pop(vr, &b->elem)) == 1) {
		uint32_t written = vhu_blk_request(b->blk, &b->elem);
		pushed |= vhu_vring_push(vr, b->elem.head, written) == 0;
		budget--;
	}
	if (pushed)
		vhu_vring_notify(vr);
	if (!was_broken && vr->vq.broken)
		fprintf(stderr, "hatchery-vhost-blk: ring %u stopped: %s\n", q,
			vr->vq.broken_why);
	return budget == 0 && r == 1;
}

/* Returns true when a ring may have chains left. */
static bool serve_rings(struct vhu_backend *b)
{
	bool more = false;
	for (unsigned q = 0; q < VHU_BLK_QUEUES; q++)
		more |= serve_ring(b, q);
	return more;
}

/* A request that failed. With REPLY_ACK asked for, the frontend hears
 * status 1 and may go on; otherwise the connection ends. */
static int failed(struct vhu_backend *b, int conn, const struct vhu_msg *m,
		  struct hatch_err *err)
{
	bool ack = vhu_backend_has(b, VHU_PROTOCOL_F_REPLY_ACK) &&
		   (m->hdr.flags & VHU_FLAG_NEED_REPLY);
	if (!ack)
		return -1;
	fprintf(stderr, "hatchery-vhost-blk: %s\n", err->msg);
	struct vhu_msg reply;
	vhu_msg_reply_u64(&reply, m, 1);
	int r = vhu_msg_send(conn, &reply);
	if (r < 0)
		return hatch_err_set(err, E(UNAVAILABLE), -r, "vhost-user reply");
	hatch_err_clear(err);
	return 1;
}

/* Read and handle one message. Returns 1 (go on), 0 (the frontend hung
 * up), -1 (*err set: end the connection). */
static int one_message(struct vhu_backend *b, int conn, struct hatch_err *err)
{
	struct vhu_msg m, reply;
	int r = vhu_msg_recv(conn, &m, err);
	if (r <= 0)
		return r;
	r = vhu_backend_handle(b, &m, &reply, err);
	vhu_msg_close_fds(&m); /* what the handler did not keep */
	if (r < 0)
		return failed(b, conn, &m, err);
	if (r == 0 && vhu_backend_has(b, VHU_PROTOCOL_F_REPLY_ACK) &&
	    (m.hdr.flags & VHU_FLAG_NEED_REPLY)) {
		vhu_msg_reply_u64(&reply, &m, 0);
		r = 1;
	}
	if (r == 1 && (r = vhu_msg_send(conn, &reply)) < 0)
		return hatch_err_set(err, E(UNAVAILABLE), -r, "vhost-user reply");
	return 1;
}

static nfds_t poll_set(struct vhu_backend *b, int conn, struct pollfd *p,
		       unsigned *qof)
{
	nfds_t n = 0;
	p[n++] = (struct pollfd){ .fd = conn, .events = POLLIN };
	for (unsigned q = 0; q < VHU_BLK_QUEUES; q++) {
		if (!vhu_vring_ready(&b->vr[q]))
			continue;
		qof[n] = q;
		p[n++] = (struct pollfd){ .fd = b->vr[q].kick_fd, .events = POLLIN };
	}
	return n;
}

static int loop(struct vhu_backend *b, int conn, struct hatch_err *err)
{
	bool more = false; /* chains left: look again without sleeping */
	for (;;) {
		struct pollfd p[1 + VHU_BLK_QUEUES];
		unsigned qof[1 + VHU_BLK_QUEUES];
		nfds_t n = poll_set(b, conn, p, qof);
		if (poll(p, n, more ? 0 : -1) < 0) {
			if (errno == EINTR)
				continue;
			return hatch_err_set(err, E(INTERNAL), errno, "poll");
		}
		for (nfds_t i = 1; i < n; i++) {
			if (p[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
				fprintf(stderr, "hatchery-vhost-blk: ring %u stopped: "
					"its kick fd hung up\n", qof[i]);
				vhu_vring_kick_failed(&b->vr[qof[i]]);
			}
			else if (p[i].revents & POLLIN)
				vhu_vring_drain_kick(&b->vr[qof[i]]);
		}
		/* Before a message: what the guest kicked before the frontend
		 * sent it (a GET_VRING_BASE, say) is served first. */
		more = serve_rings(b);
		if (p[0].revents) {
			int r = one_message(b, conn, err);
			if (r <= 0)
				return r;
			/* And after: an enable or a start may have made chains
			 * available that no kick will announce again. */
			more |= serve_rings(b);
		}
	}
}

int vhu_backend_serve(int conn, struct vhu_blk *blk, struct hatch_err *err)
{
	struct vhu_backend *b = malloc(sizeof(*b));
	if (!b)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "backend state");
	vhu_backend_init(b, blk);
	int r = loop(b, conn, err);
	vhu_backend_reset(b);
	free(b);
	return r;
}
