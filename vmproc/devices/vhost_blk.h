/* vhost_blk.h - a virtio-blk device (type 2) whose queue is served by a
 * vhost-user backend (vhost/frontend.h): vmproc keeps the virtio-mmio
 * registers, the backend walks the ring.
 *
 * vmproc's part: the transport (virtio_mmio.c) with the backend's config
 * space (read once, GET_CONFIG, at init) and features (the backend's
 * device-specific bits 0..23; of the transport's only VERSION_1: no
 * INDIRECT_DESC, EVENT_IDX or packed rings, which vmproc's virtqueue
 * check of the driver's layout does not accept either). When the driver
 * sets DRIVER_OK with the queue ready, the queue goes to the backend:
 * SET_FEATURES (the driver's), SET_VRING_NUM/BASE/ADDR (the host
 * addresses of the areas vmproc checked at QueueReady), CALL (the irqfd's
 * eventfd: the backend interrupts the guest itself), ERR (an eventfd of
 * the device's), KICK (the queue's
 * ioeventfd: the guest's notify goes to the backend without vmproc),
 * ENABLE. A device reset stops the ring (GET_VRING_BASE). InterruptStatus
 * reads with VRING set (ops.vring_irq_elsewhere).
 *
 * Failure: any error of the backend (a refused request, a bad reply, no
 * reply in 10 s, its connection closed, a message it sends unasked) and a
 * ring the backend found broken (its err eventfd) make the device dead: DEVICE_NEEDS_RESET for the driver, and
 * vmp_vhost_blk_failed() says why; vmproc ends the VM with it (a guest
 * whose disk went away is not worth keeping).
 *
 * Lifecycle: vmp_vhost_blk_init (the handshake up to SET_MEM_TABLE; the
 * struct must not move after), register &b->mmio on the bus, poll
 * vmp_vhost_blk_pollfd and call vmp_vhost_blk_conn_event when it is
 * ready, and vmp_vhost_blk_err_fd / vmp_vhost_blk_err_event likewise.
 * No teardown: the process's exit is (the machine's rule); the err
 * eventfd is the device's own.
 * Ownership: everything in the params is borrowed and must outlive the
 * device. Locking: every call holds the bus mutex, like the transport.
 */
#ifndef HATCHERY_VMP_VHOST_BLK_H
#define HATCHERY_VMP_VHOST_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_blk.h>

#include "devices/virtio_mmio.h"
#include "frontend.h"
#include "hatchery/error.h"

#define VMP_VHOST_BLK_QUEUE_MAX 256 /* the backend takes rings up to 256 */

struct vmp_vhost_blk_params {
	int sock;                         /* the connection to the backend */
	const struct vhu_mem_region *regions; /* guest RAM, as the backend maps it */
	unsigned nregions;                /* 1..8 */
	int mem_fd;                       /* every region is in this file */
	vmp_gpa_xlate_fn xlate;           /* guest physical -> our pointer */
	void *xlate_opaque;
	int kick_fd;                      /* queue 0's ioeventfd's eventfd */
	int call_fd;                      /* the irqfd's eventfd */
	void (*raise_irq)(void *opaque);  /* the transport's own interrupts */
	void *irq_opaque;
};

struct vmp_vhost_blk {
	struct vmp_virtio_mmio mmio;      /* the bus's opaque */
	/* Private. */
	struct vmp_virtio_dev_ops ops;
	struct vhu_front fe;
	int kick_fd, call_fd;
	int err_fd;                       /* ours: the backend signals a broken ring */
	uint8_t config[sizeof(struct virtio_blk_config)];
	bool started;                     /* the backend has the ring */
	bool dead;
	int code;                         /* hatchery.v1.ErrorCode of the death */
	char why[HATCH_ERR_MSG_MAX + 8]; /* "disk: " and a message */
};

/* The handshake (vhu_front_open), GET_CONFIG, SET_MEM_TABLE, then the
 * transport. Returns 0 or -1 with *err. */
int vmp_vhost_blk_init(struct vmp_vhost_blk *b, const struct vmp_vhost_blk_params *p,
		       struct hatch_err *err);

/* The fd to poll (POLLIN) for the backend going away: the connection. */
int vmp_vhost_blk_pollfd(const struct vmp_vhost_blk *b);

/* The ring's err eventfd (SET_VRING_ERR), to poll (POLLIN): the backend
 * signals it when it finds the guest's ring broken (an index out of range,
 * a buffer outside guest memory...) and stops serving it. */
int vmp_vhost_blk_err_fd(const struct vmp_vhost_blk *b);

/* poll said the err eventfd fired: the device is dead ("the disk backend
 * stopped the ring: the guest broke it"). Returns -1 then, 0 if it had
 * not fired after all. */
int vmp_vhost_blk_err_event(struct vmp_vhost_blk *b);

/* poll said the connection is readable or hung up. Outside a request the
 * backend has nothing to say: an end of stream or a message makes the
 * device dead. (A reply that a vCPU thread read meanwhile is no event.)
 * Returns 0, or -1 when the device is dead. */
int vmp_vhost_blk_conn_event(struct vmp_vhost_blk *b);

/* Why the device died, or NULL. *code (if not NULL) gets the error code
 * to end the VM with: GUEST_FAULT for a ring the guest broke, VM_ERROR for
 * the backend's failures. */
const char *vmp_vhost_blk_failed(const struct vmp_vhost_blk *b, int *code);

#endif
