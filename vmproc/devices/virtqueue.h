/* virtqueue.h - split virtqueues (virtio 1.x, §2.6), device side.
 *
 * The rings live in guest memory, which the guest may change at any moment
 * from another vCPU: every index and descriptor is read once into a local
 * copy and checked before it is used, and every guest address is turned
 * into a host pointer through the caller's translation function, which
 * refuses (NULL) any range not wholly inside guest RAM. Nothing here writes
 * or reads a byte outside what that function returned.
 *
 * Features this device side does NOT accept, so a ring that uses them is
 * broken: VIRTIO_RING_F_INDIRECT_DESC (an INDIRECT flag is an error),
 * VIRTIO_RING_F_EVENT_IDX (used_event/avail_event are never touched),
 * packed rings.
 *
 * Broken ring: anything a correct driver cannot produce (an address outside
 * RAM, a head or next index >= the queue size, a chain longer than the
 * queue, a readable descriptor after a writable one, an INDIRECT flag,
 * avail->idx more than the queue size ahead of what was consumed). The
 * queue then stops for good -- pop returns -EIO, push does nothing -- and
 * on_broken is called once, so the transport can set DEVICE_NEEDS_RESET.
 * Only a reset of the queue (vmp_vq_reset) makes it usable again.
 *
 * Lifecycle: vmp_vq_init() once (the transport does it for each of its
 * queues); the driver's configuration is written into the public config
 * fields (num, desc_gpa, avail_gpa, used_gpa); vmp_vq_enable() when the
 * driver sets QueueReady; then pop/push/needs_notify; vmp_vq_reset() on a
 * device reset. Nothing is allocated: a struct vmp_vq owns no memory, and
 * the host pointers it holds are into guest RAM, borrowed.
 *
 * Locking: none inside. All calls on one queue must be serialised by the
 * caller (hatchery: the VM's device-bus mutex, held by the vCPU thread in
 * a register handler and by the child's main thread when it processes a
 * queue). The guest's concurrent accesses are ordered with acquire/release
 * on the ring indices (see virtqueue.c).
 */
#ifndef HATCHERY_VMP_VIRTQUEUE_H
#define HATCHERY_VMP_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* Largest queue this code takes: 1024, QEMU's VIRTQUEUE_MAX_SIZE. The
 * vhost-user backend shares it, and QEMU's virtio-mmio transport offers a
 * driver QueueNumMax 1024 whatever the device's queue-size (Linux takes
 * it), then passes the driver's choice on in SET_VRING_NUM. hatchery's
 * own devices offer 256 or less (their queue_max). */
#define VMP_VQ_MAX_SIZE 1024

/* Bound on the segments (non-empty descriptors) of one popped chain, so
 * that struct vmp_vq_elem stays small: a chain with more breaks the queue.
 * In a queue of 256 or less no chain can have more (a chain visits each
 * descriptor once); devices on larger queues advertise fewer (virtio-blk's
 * seg_max), and a driver that keeps to that never comes near it. */
#define VMP_VQ_MAX_SEGS 256

/* GPA range [gpa, gpa+len) -> host pointer to its first byte, or NULL
 * unless the whole range is inside guest RAM and contiguous in the host
 * mapping. len may be 0 (then gpa itself must be inside RAM). Must not
 * crash on any input: it is fed guest-controlled numbers. */
typedef void *(*vmp_gpa_xlate_fn)(void *opaque, uint64_t gpa, uint64_t len);

/* The default translation over a VM's RAM (opaque: a struct vmp_vm *),
 * with snapshot/'s layout (snap_ram_slots): [0, min(size, 3 GiB)) and the
 * rest at 4 GiB. */
void *vmp_vm_gpa_xlate(void *vm, uint64_t gpa, uint64_t len);

/* The same over a bare host mapping of mem_size bytes laid out as above:
 * for tests and fuzzers that have memory but no struct vmp_vm. */
struct vmp_guest_ram {
	uint8_t *mem;
	uint64_t size;
};
void *vmp_ram_gpa_xlate(void *ram /* struct vmp_guest_ram * */, uint64_t gpa,
			uint64_t len);

/* One popped descriptor chain. iov[0, nread) are the parts the device
 * reads (driver -> device), iov[nread, nread + nwrite) the parts it may
 * write; every base is a host pointer into guest RAM, already checked.
 * Zero-length descriptors are dropped. */
struct vmp_vq_elem {
	uint16_t head;          /* give it back to vmp_vq_push */
	uint16_t nread, nwrite;
	uint64_t read_len, write_len; /* sums of the lengths */
	struct iovec iov[VMP_VQ_MAX_SEGS];
};

struct vmp_vq {
	/* The driver's configuration, written by the transport while the
	 * queue is not ready. */
	uint16_t num;           /* queue size: a power of 2, <= num_max */
	uint16_t num_max;       /* what the device offers, <= VMP_VQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* Private below. */
	bool enabled;           /* vmp_vq_enable succeeded, not reset since */
	bool broken;
	const char *broken_why; /* static string, for the log */
	uint16_t last_avail;    /* next avail ring entry to consume */
	uint16_t used_idx;      /* our copy of used->idx */
	void *desc, *avail, *used; /* host pointers, checked at enable */
	vmp_gpa_xlate_fn xlate;
	void *xlate_opaque;
	void (*on_broken)(void *opaque, struct vmp_vq *vq);
	void *broken_opaque;
};

/* Set up an idle queue. on_broken may be NULL. */
void vmp_vq_init(struct vmp_vq *vq, uint16_t num_max, vmp_gpa_xlate_fn xlate,
		 void *xlate_opaque,
		 void (*on_broken)(void *opaque, struct vmp_vq *vq),
		 void *broken_opaque);

/* Forget the driver's configuration and all state (also `broken`); keeps
 * num_max, the translation and on_broken. */
void vmp_vq_reset(struct vmp_vq *vq);

/* The driver set QueueReady: check num and the three areas (sizes,
 * alignment, inside RAM) and start from index 0. Returns 0, or -EINVAL
 * with the queue marked broken. */
int vmp_vq_enable(struct vmp_vq *vq);

/* vmp_vq_enable, then continue from saved indices (a snapshot restore).
 * last_avail may trail avail->idx by at most num; else -EINVAL, broken. */
int vmp_vq_resume(struct vmp_vq *vq, uint16_t last_avail, uint16_t used_idx);

/* Stop using the queue (QueueReady written 0), keeping its configuration. */
void vmp_vq_disable(struct vmp_vq *vq);

bool vmp_vq_usable(const struct vmp_vq *vq); /* enabled and not broken */

/* Mark broken (idempotent: on_broken runs the first time only). For
 * devices that find a chain unusable for their own reasons. */
void vmp_vq_set_broken(struct vmp_vq *vq, const char *why);

/* Take the next available chain into *e. Returns 1 (got one), 0 (none
 * available, or the queue is not usable), -EIO (the ring is broken: now,
 * or before). */
int vmp_vq_pop(struct vmp_vq *vq, struct vmp_vq_elem *e);

/* Is a chain available? (No side effects but breaking the queue when
 * avail->idx is out of range: then false.) */
bool vmp_vq_has_avail(struct vmp_vq *vq);

/* Return a popped chain: used ring entry {head, written}, then used->idx
 * (release: the entry is visible before the index). `written` is the bytes
 * the device wrote into the chain's writable part. Returns 0, or -EIO on a
 * queue that is not usable (the chain is dropped: the queue is dead
 * anyway), -EINVAL for a head that cannot be one. */
int vmp_vq_push(struct vmp_vq *vq, uint16_t head, uint32_t written);

/* After pushes: does the driver want an interrupt? (No EVENT_IDX: that is
 * avail->flags' NO_INTERRUPT bit, read after a full barrier so that a
 * driver re-enabling interrupts after our used->idx store is not missed.) */
bool vmp_vq_needs_notify(struct vmp_vq *vq);

/* Copy up to len bytes from the readable part of e, starting at byte off
 * of that part, into buf. Returns bytes copied. */
size_t vmp_vq_elem_read(const struct vmp_vq_elem *e, uint64_t off, void *buf,
			size_t len);

/* Copy up to len bytes from buf into the writable part of e, starting at
 * byte off of that part. Returns bytes copied. */
size_t vmp_vq_elem_write(const struct vmp_vq_elem *e, uint64_t off,
			 const void *buf, size_t len);

#endif
