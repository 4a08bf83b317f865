/* vring.h - one vhost-user virtqueue on the backend side.
 *
 * The frontend describes the ring piecemeal (SET_VRING_NUM, _ADDR, _BASE,
 * _KICK, _CALL, _ERR, _ENABLE); this keeps those values, and starts the
 * ring on SET_VRING_KICK. The split-ring walking itself -- every index and
 * descriptor read once and checked, chains bounded by the queue size (no
 * loops), INDIRECT refused, buffers translated and refused outside guest
 * memory -- is vmproc/devices/virtqueue.c's (struct vmp_vq), which takes
 * a translation function: here vhu_mem_xlate over the regions the frontend
 * mapped. Ring addresses arrive as frontend virtual addresses; they are
 * turned into guest physical ones at start, inside one region each.
 *
 * Lifecycle: vhu_vring_init once; the SET_VRING_* setters while stopped;
 * vhu_vring_start (on SET_VRING_KICK) translates the addresses and
 * continues from the base (last_avail_idx) with used->idx as the ring
 * holds it; pop/push/notify while started; vhu_vring_stop (GET_VRING_BASE)
 * returns the index to resume from. vhu_vring_remap after the memory
 * table changed under a started ring (its host pointers went with it).
 * Not negotiated, so never seen in a correct ring: INDIRECT_DESC,
 * EVENT_IDX, packed rings, logging (the LOG flag of SET_VRING_ADDR).
 *
 * Ownership: the kick, call and err eventfds given to the setters are
 * taken (closed when replaced, and by vhu_vring_close), and made
 * O_NONBLOCK. The struct vhu_mem
 * passed at init is borrowed and must outlive the ring.
 */
#ifndef HATCHERY_VHOST_VRING_H
#define HATCHERY_VHOST_VRING_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtqueue.h"
#include "mem.h"
#include "user_msg.h"

/* The largest queue size accepted by SET_VRING_NUM (1024: what QEMU's
 * virtio-mmio lets a driver choose; see devices/virtqueue.h). */
#define VHU_VRING_MAX_SIZE VMP_VQ_MAX_SIZE

struct vhu_vring {
	uint16_t num;
	uint16_t base;          /* SET_VRING_BASE: where to start consuming */
	struct vhu_vring_addr addr; /* uvas, as SET_VRING_ADDR gave them */
	bool have_addr;
	bool started;           /* between SET_VRING_KICK and GET_VRING_BASE */
	bool enabled;           /* SET_VRING_ENABLE (or no protocol features) */
	int kick_fd, call_fd, err_fd; /* -1 when none */
	struct vmp_vq vq;       /* valid while started */
	struct vhu_mem *mem;    /* borrowed */
};

void vhu_vring_init(struct vhu_vring *vr, struct vhu_mem *mem);

/* Close the eventfds and forget everything (back to init's state). */
void vhu_vring_close(struct vhu_vring *vr);

/* Each returns 0, or -1 with *err set; all refuse a started ring except
 * the fd setters and set_enable. */
int vhu_vring_set_num(struct vhu_vring *vr, uint32_t num, struct hatch_err *err);
int vhu_vring_set_addr(struct vhu_vring *vr, const struct vhu_vring_addr *a,
		       struct hatch_err *err);
int vhu_vring_set_base(struct vhu_vring *vr, uint32_t base, struct hatch_err *err);
void vhu_vring_set_kick(struct vhu_vring *vr, int fd);
void vhu_vring_set_call(struct vhu_vring *vr, int fd);
void vhu_vring_set_err(struct vhu_vring *vr, int fd);
void vhu_vring_set_enable(struct vhu_vring *vr, bool on);

/* Start: num, addresses and a kick fd must have been set; the three areas
 * must lie inside guest memory. Returns 0 or -1 with *err set. */
int vhu_vring_start(struct vhu_vring *vr, struct hatch_err *err);

/* After a memory table change: look the started ring's areas up again,
 * keeping its indices. Returns 0, or -1 with *err set (the ring is then
 * stopped). Nothing to do for a stopped ring. */
int vhu_vring_remap(struct vhu_vring *vr, struct hatch_err *err);

/* Stop (GET_VRING_BASE); returns the next avail index to consume. */
uint16_t vhu_vring_stop(struct vhu_vring *vr);

/* Started, enabled and not broken: worth popping from. */
bool vhu_vring_ready(const struct vhu_vring *vr);

/* vmp_vq_pop on the started ring: 1 got a chain, 0 none, -EIO broken
 * (then the err eventfd, if any, is signalled once). */
int vhu_vring_pop(struct vhu_vring *vr, struct vmp_vq_elem *e);

/* Return a chain (used entry {head, written}). */
int vhu_vring_push(struct vhu_vring *vr, uint16_t head, uint32_t written);

/* After a batch of pushes: signal the call eventfd unless the driver
 * asked for no interrupts. */
void vhu_vring_notify(struct vhu_vring *vr);

/* Drain the kick eventfd (non-blocking; nothing to read is fine). */
void vhu_vring_drain_kick(struct vhu_vring *vr);

/* poll() said POLLHUP/POLLERR/POLLNVAL on the kick fd (no eventfd does
 * that: the frontend sent something else). The ring stops, as broken, so
 * its fd leaves the poll set instead of waking the loop forever. */
void vhu_vring_kick_failed(struct vhu_vring *vr);

#endif
