/* virtio_mmio.h - the virtio-mmio transport, version 2 (virtio 1.1 §4.2.2).
 *
 * One struct vmp_virtio_mmio is one device's register window (0x200 bytes
 * used of its 4 KiB page: registers up to 0x0fc, device config from
 * 0x100). It owns the device's virtqueues and its status, feature and
 * interrupt registers; what is device-specific comes through a
 * struct vmp_virtio_dev_ops.
 *
 * Wiring (the integrator's):
 *   - register vmp_virtio_mmio_read / vmp_virtio_mmio_write with the device
 *     bus at the device's base (opaque = the struct vmp_virtio_mmio *;
 *     offsets are relative to the base);
 *   - raise_irq: called with InterruptStatus already updated whenever the
 *     device interrupts (edge: one call, one edge). In a VM it writes the
 *     irqfd (virtio_mmio_kvm.h); in tests it counts.
 *   - QueueNotify: in a VM an ioeventfd per queue absorbs the guest's
 *     write in KVM (virtio_mmio_kvm.h) and the child's main thread calls
 *     vmp_virtio_mmio_notify(); without one (tests, or if the ioeventfd
 *     could not be registered) the write reaches vmp_virtio_mmio_write,
 *     which calls the same function on the vCPU thread.
 *
 * Lifecycle: vmp_virtio_mmio_init() (no allocation; nothing to free), the
 * guest drives it; vmp_virtio_mmio_reset() on a guest reset (status 0) or
 * by the host. The struct must not move after init (the queues point back
 * at it).
 *
 * Locking: none inside; every call on one device -- register handlers on
 * vCPU threads, notify and the device's host-side API on the main thread
 * -- holds the VM's device-bus mutex. ops callbacks run under it too.
 */
#ifndef HATCHERY_VMP_VIRTIO_MMIO_H
#define HATCHERY_VMP_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtqueue.h"
#include "snapshot.h"

/* Where device i is, and its interrupt (docs/guest-linux.md; the DSDT
 * describes the same). */
#define VMP_VIRTIO_MMIO_BASE(i) (0xD0000000ull + 0x1000ull * (i))
#define VMP_VIRTIO_MMIO_GSI(i) (5u + (unsigned)(i))

#define VMP_VIRTIO_MMIO_SIZE 0x1000u    /* one device's window */
#define VMP_VIRTIO_MMIO_NOTIFY 0x050u   /* QueueNotify, for the ioeventfd */
#define VMP_VIRTIO_MAX_QUEUES 8
#define VMP_VIRTIO_VENDOR 0x48544348u   /* "HCTH" read as LE bytes; any */

struct vmp_virtio_mmio;

struct vmp_virtio_dev_ops {
	uint32_t device_id;     /* virtio device type (3: console) */
	uint64_t features;      /* offered; VIRTIO_F_VERSION_1 is added */
	unsigned nqueues;       /* 1..VMP_VIRTIO_MAX_QUEUES */
	uint16_t queue_max;     /* QueueNumMax of every queue, <= VMP_VQ_MAX_SIZE */
	/* Device config space, offset from 0x100; size 1, 2 or 4. NULL: reads
	 * 0. Writes to config space are ignored (no hatchery device has a
	 * writable field). */
	uint32_t (*config_read)(void *dev, uint32_t offset, unsigned size);
	/* Queue q has new buffers (the guest notified it, or DRIVER_OK was
	 * set with the queue ready). Only called when the device is live
	 * (DRIVER_OK, no NEEDS_RESET) and the queue usable. */
	void (*queue_notify)(void *dev, unsigned q);
	/* The transport was reset (by the driver writing 0 to Status, or
	 * vmp_virtio_mmio_reset): drop device state that refers to the
	 * queues. May be NULL. */
	void (*reset)(void *dev);
	/* The device just set DEVICE_NEEDS_RESET (a broken ring: the guest
	 * did what no correct driver does); why is a static string. Once
	 * per reset. May be NULL. */
	void (*failed)(void *dev, const char *why);
	/* Used-buffer notifications are sent by someone else: a vhost-user
	 * backend writes the irqfd itself, and the transport never sees the
	 * used ring. InterruptStatus then reads with the VRING bit set while
	 * the device is live, since the driver must look at its used rings on
	 * an interrupt the transport cannot account for; a spurious bit only
	 * makes it find nothing new there. */
	bool vring_irq_elsewhere;
};

struct vmp_virtio_mmio {
	/* Private: read through the functions below. */
	const struct vmp_virtio_dev_ops *ops;
	void *dev;
	void (*raise_irq)(void *opaque);
	void *irq_opaque;
	uint64_t device_features, driver_features;
	uint32_t device_features_sel, driver_features_sel;
	uint32_t queue_sel;
	uint32_t status;
	uint32_t interrupt_status;
	uint32_t config_generation;
	const char *broken_why;
	bool restoring;         /* vmp_virtio_mmio_restore: no callbacks */
	bool queue_ready[VMP_VIRTIO_MAX_QUEUES]; /* as the driver wrote it */
	struct vmp_vq vq[VMP_VIRTIO_MAX_QUEUES];
};

/* Set up a device in the reset state. ops and dev are borrowed and must
 * outlive d; so must the translation's opaque. Returns 0 or -EINVAL (bad
 * ops). */
int vmp_virtio_mmio_init(struct vmp_virtio_mmio *d,
			 const struct vmp_virtio_dev_ops *ops, void *dev,
			 vmp_gpa_xlate_fn xlate, void *xlate_opaque,
			 void (*raise_irq)(void *opaque), void *irq_opaque);

/* Bus callbacks. offset is from the device's base; size 1, 2, 4 or 8.
 * Registers (below 0x100) take 32-bit accesses only (§4.2.2.2): other
 * widths read 0 and are ignored on write, as are unknown offsets. */
void vmp_virtio_mmio_read(void *opaque, uint64_t offset, void *data, unsigned size);
void vmp_virtio_mmio_write(void *opaque, uint64_t offset, const void *data,
			   unsigned size);

/* Queue q was notified (its ioeventfd fired): process it if the device is
 * live and the queue usable; otherwise nothing (a notify before DRIVER_OK
 * is served when DRIVER_OK is set). q out of range is ignored. */
void vmp_virtio_mmio_notify(struct vmp_virtio_mmio *d, unsigned q);

/* For the device: the queue q (NULL if out of range). */
struct vmp_vq *vmp_virtio_mmio_queue(struct vmp_virtio_mmio *d, unsigned q);

/* For the device: is the driver done setting up (DRIVER_OK) and the device
 * not failed (NEEDS_RESET)? Host-side data is held back until then. */
bool vmp_virtio_mmio_live(const struct vmp_virtio_mmio *d);

/* For the device: buffers were returned on some queue; interrupt if the
 * driver wants one (vmp_vq_needs_notify). */
void vmp_virtio_mmio_used(struct vmp_virtio_mmio *d, struct vmp_vq *vq);

/* The device failed: set DEVICE_NEEDS_RESET and, if the driver is running,
 * tell it with a configuration change interrupt (§2.1.2). Every queue
 * stops until the driver resets the device. */
void vmp_virtio_mmio_needs_reset(struct vmp_virtio_mmio *d, const char *why);

/* Why the device needs a reset (a static string), or NULL. */
const char *vmp_virtio_mmio_broken_reason(const struct vmp_virtio_mmio *d);

/* Reset as if the driver wrote 0 to Status. */
void vmp_virtio_mmio_reset(struct vmp_virtio_mmio *d);

uint32_t vmp_virtio_mmio_status(const struct vmp_virtio_mmio *d);

/* The features the driver accepted (meaningful once FEATURES_OK stuck). */
uint64_t vmp_virtio_mmio_driver_features(const struct vmp_virtio_mmio *d);

/* ---- snapshots --------------------------------------------------------- */
/* The transport's state, for a snapshot's devices section: the decoded
 * record snapshot/ writes and checks (struct snap_virtio_dev, one owner of
 * the format). Guest memory (the rings) is in the snapshot anyway; this is
 * what the device remembers beside it. The device's own state (a console
 * has none; an agent channel must be idle) is not in it. */
_Static_assert(VMP_VIRTIO_MAX_QUEUES == SNAP_VIRTIO_MAX_QUEUES,
	       "a snapshot's device record holds every queue of the transport");

void vmp_virtio_mmio_save(const struct vmp_virtio_mmio *d, struct snap_virtio_dev *s);

/* Put a device just made by vmp_virtio_mmio_init (same ops) into the saved
 * state, over guest memory restored from the same snapshot. Everything is
 * checked as if the guest had written it: a state for another device,
 * unknown features, or rings that do not fit (guest RAM) are
 * refused with -EINVAL and the device is left reset (ops->reset runs;
 * ops->failed does not). Does not interrupt;
 * the caller re-raises if the saved interrupt_status says one is pending
 * (vmp_virtio_mmio_repost_irq). */
int vmp_virtio_mmio_restore(struct vmp_virtio_mmio *d, const struct snap_virtio_dev *s);

/* After a restore: raise the interrupt again if InterruptStatus is not 0
 * (an edge sent before the snapshot was taken may not have been taken
 * by the guest). */
void vmp_virtio_mmio_repost_irq(struct vmp_virtio_mmio *d);

#endif
