/* frontend.h - the VMM's side of vhost-user (QEMU docs/interop/vhost-user.rst):
 * what vmproc says to a backend that serves one virtio device's queues.
 *
 * Over one connected SOCK_STREAM socket, in this order:
 *   vhu_front_open()          GET_FEATURES, GET_PROTOCOL_FEATURES,
 *                             SET_PROTOCOL_FEATURES (REPLY_ACK and CONFIG
 *                             when offered), SET_OWNER
 *   vhu_front_get_config()    GET_CONFIG (needs CONFIG)
 *   vhu_front_set_mem_table() SET_MEM_TABLE: guest RAM's regions and fds
 *   ... the guest's driver negotiates, then sets DRIVER_OK:
 *   vhu_front_set_features()  SET_FEATURES (the driver's, plus
 *                             VHOST_USER_F_PROTOCOL_FEATURES when offered)
 *   vhu_front_start_ring()    SET_VRING_NUM/BASE/ADDR/CALL/ERR/KICK, ENABLE 1
 *   vhu_front_stop_ring()     ENABLE 0, GET_VRING_BASE (a device reset)
 *
 * Every reply is checked: header flags (version 1 with REPLY), the request
 * number, the exact size; fds with a reply are closed and refused. With
 * REPLY_ACK negotiated every request that has no reply of its own is sent
 * with NEED_REPLY and its status must be 0. A reply that does not come
 * within VHU_FRONT_TIMEOUT_MS is an error too: the caller (a vCPU thread
 * holding the device lock) must not wait forever on a stuck backend. Any
 * error returns -1 with *err saying what, names the request, and leaves the
 * connection unusable (f->broken): the caller ends the device.
 *
 * Ownership: the socket and every fd passed in are borrowed (sent as
 * copies with SCM_RIGHTS); struct vhu_front owns nothing and needs no
 * teardown. Not thread-safe: one caller at a time (vmproc: the bus mutex).
 */
#ifndef HATCHERY_VHOST_FRONTEND_H
#define HATCHERY_VHOST_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "user_msg.h"

#define VHU_FRONT_TIMEOUT_MS 10000

struct vhu_front {
	int sock;                    /* borrowed */
	uint64_t features;           /* the backend's GET_FEATURES */
	uint64_t protocol_features;  /* negotiated: offered & what we speak */
	bool broken;                 /* an error happened: say nothing more */
};

/* The handshake up to SET_OWNER. The backend must offer
 * VIRTIO_F_VERSION_1. Returns 0 or -1 with *err. */
int vhu_front_open(struct vhu_front *f, int sock, struct hatch_err *err);

bool vhu_front_has(const struct vhu_front *f, unsigned protocol_feature);

/* GET_CONFIG of size bytes from offset 0 into buf (size <= 256). */
int vhu_front_get_config(struct vhu_front *f, void *buf, uint32_t size,
			 struct hatch_err *err);

/* SET_MEM_TABLE: n (1..8) regions, fds[i] for region i (borrowed). */
int vhu_front_set_mem_table(struct vhu_front *f, const struct vhu_mem_region *r,
			    const int *fds, unsigned n, struct hatch_err *err);

/* SET_FEATURES: virtio features (must be among the backend's; the
 * protocol-features bit is added when the backend offered it). */
int vhu_front_set_features(struct vhu_front *f, uint64_t features,
			   struct hatch_err *err);

/* One ring, as the backend is to see it: addresses are the frontend's
 * virtual addresses (its mapping of the regions given in SET_MEM_TABLE). */
struct vhu_front_ring {
	uint16_t num;
	uint16_t base;               /* the next avail index the backend takes */
	uint64_t desc, avail, used;  /* frontend virtual addresses */
	int kick_fd;                 /* eventfd the guest's notify signals */
	int call_fd;                 /* eventfd the backend signals; -1: none */
	int err_fd;                  /* eventfd for a broken ring; -1: none */
};

int vhu_front_start_ring(struct vhu_front *f, unsigned index,
			 const struct vhu_front_ring *r, struct hatch_err *err);

/* Stop a started ring: SET_VRING_ENABLE 0 (with protocol features), then
 * GET_VRING_BASE, whose answer (the next avail index) goes to *base. */
int vhu_front_stop_ring(struct vhu_front *f, unsigned index, uint16_t *base,
			struct hatch_err *err);

#endif
