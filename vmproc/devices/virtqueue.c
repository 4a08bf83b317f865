/* virtqueue.c - split virtqueues, device side: see virtqueue.h.
 *
 * Layout (virtio 1.1 §2.6): descriptor table of num 16-byte entries
 * {le64 addr, le32 len, le16 flags, le16 next}, 16-aligned; available ring
 * {le16 flags, le16 idx, le16 ring[num], le16 used_event}, 2-aligned; used
 * ring {le16 flags, le16 idx, {le32 id, le32 len}[num], le16 avail_event},
 * 4-aligned. x86 only, so little-endian fields are read as they are.
 *
 * Ordering with the guest (§2.6.13 and Linux's virtio_ring.c): the driver
 * writes ring entries, then (wmb) avail->idx; we load avail->idx with
 * acquire, so the entries and the descriptors they name are read after it.
 * We write used entries, then store used->idx with release, so the driver
 * that sees the new index sees the entries.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <linux/virtio_ring.h>

#include "devices/virtqueue.h"
#include "kvm/kvm.h"
#include "snapshot.h"

_Static_assert(VMP_VQ_MAX_SEGS == 256, "vmp_vq_pop's message says 256");

/* Byte offsets inside the rings. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING 4

#define DESC_SIZE 16u

/* ---- translation over guest RAM ------------------------------------- */

static void *ram_xlate(uint8_t *mem, uint64_t mem_size, uint64_t gpa, uint64_t len)
{
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned n = snap_ram_slots(mem_size, slot);
	if (!mem || gpa + len < gpa) /* a range that wraps is in no slot */
		return NULL;
	for (unsigned i = 0; i < n; i++) {
		/* Compare offsets inside the slot, never gpa + len against the
		 * slot's end: both sides stay below 2^64 that way. */
		if (gpa < slot[i].gpa || gpa - slot[i].gpa >= slot[i].len)
			continue;
		uint64_t off = gpa - slot[i].gpa;
		if (len > slot[i].len - off)
			return NULL; /* runs off the slot: not contiguous RAM */
		return mem + slot[i].offset + off;
	}
	return NULL;
}

void *vmp_vm_gpa_xlate(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vmp_vm *vm = opaque;
	return ram_xlate(vm->mem, vm->mem_size, gpa, len);
}

void *vmp_ram_gpa_xlate(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vmp_guest_ram *r = opaque;
	return ram_xlate(r->mem, r->size, gpa, len);
}

/* ---- guest-memory accessors ------------------------------------------ */
/* Atomic loads and stores: the guest writes these words concurrently, and
 * a plain access would let the compiler read one twice (a check on the
 * first read, a use of the second). All are naturally aligned: the areas
 * are checked for alignment at enable time. */

/* The casts go through void *: the byte arithmetic says nothing of
 * alignment, the enable-time checks do. */
static inline const void *at(const void *base, size_t off)
{
	return (const uint8_t *)base + off;
}

static inline uint16_t ld16(const void *base, size_t off, int order)
{
	return __atomic_load_n((const uint16_t *)at(base, off), order);
}

static inline void st16(void *base, size_t off, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)(void *)((uint8_t *)base + off), v, order);
}

static inline void st32(void *base, size_t off, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)((uint8_t *)base + off), v, __ATOMIC_RELAXED);
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct desc ld_desc(const struct vmp_vq *vq, uint16_t i)
{
	const void *d = at(vq->desc, (size_t)i * DESC_SIZE);
	return (struct desc){
		.addr = __atomic_load_n((const uint64_t *)d, __ATOMIC_RELAXED),
		.len = __atomic_load_n((const uint32_t *)at(d, 8), __ATOMIC_RELAXED),
		.flags = __atomic_load_n((const uint16_t *)at(d, 12), __ATOMIC_RELAXED),
		.next = __atomic_load_n((const uint16_t *)at(d, 14), __ATOMIC_RELAXED),
	};
}

/* ---- lifecycle --------------------------------------------------------- */

void vmp_vq_init(struct vmp_vq *vq, uint16_t num_max, vmp_gpa_xlate_fn xlate,
		 void *xlate_opaque,
		 void (*on_broken)(void *opaque, struct vmp_vq *vq),
		 void *broken_opaque)
{
	memset(vq, 0, sizeof(*vq));
	vq->num_max = num_max > VMP_VQ_MAX_SIZE ? VMP_VQ_MAX_SIZE : num_max;
	vq->xlate = xlate;
	vq->xlate_opaque = xlate_opaque;
	vq->on_broken = on_broken;
	vq->broken_opaque = broken_opaque;
}

void vmp_vq_reset(struct vmp_vq *vq)
{
	vmp_vq_init(vq, vq->num_max, vq->xlate, vq->xlate_opaque, vq->on_broken,
		    vq->broken_opaque);
}

void vmp_vq_set_broken(struct vmp_vq *vq, const char *why)
{
	if (vq->broken)
		return;
	vq->broken = true;
	vq->broken_why = why;
	if (vq->on_broken)
		vq->on_broken(vq->broken_opaque, vq);
}

static int broken(struct vmp_vq *vq, const char *why)
{
	vmp_vq_set_broken(vq, why);
	return -EIO;
}

int vmp_vq_enable(struct vmp_vq *vq)
{
	uint16_t n = vq->num;
	/* Split rings index modulo num with free-running 16-bit counters:
	 * that only works for a power of 2 (§2.6: "Queue Size ... is always a
	 * power of 2"). */
	if (n == 0 || n > vq->num_max || (n & (n - 1)) != 0) {
		vmp_vq_set_broken(vq, "queue size not a power of 2 in 1..QueueNumMax");
		return -EINVAL;
	}
	if (vq->desc_gpa % 16 || vq->avail_gpa % 2 || vq->used_gpa % 4) {
		vmp_vq_set_broken(vq, "misaligned ring");
		return -EINVAL;
	}
	/* Sizes include used_event/avail_event (§2.6), which Linux allocates
	 * whether or not EVENT_IDX is negotiated. */
	void *d = vq->xlate(vq->xlate_opaque, vq->desc_gpa, (uint64_t)n * DESC_SIZE);
	void *a = vq->xlate(vq->xlate_opaque, vq->avail_gpa, 6 + 2 * (uint64_t)n);
	void *u = vq->xlate(vq->xlate_opaque, vq->used_gpa, 6 + 8 * (uint64_t)n);
	if (!d || !a || !u) {
		vmp_vq_set_broken(vq, "ring outside guest RAM");
		return -EINVAL;
	}
	/* Guest RAM is page-aligned in the host (mmap), so aligned GPAs give
	 * aligned pointers; a caller's translation that breaks that would make
	 * the atomic accesses above misaligned. */
	if ((uintptr_t)d % 16 || (uintptr_t)a % 2 || (uintptr_t)u % 4) {
		vmp_vq_set_broken(vq, "ring misaligned in the host mapping");
		return -EINVAL;
	}
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->enabled = true;
	return 0;
}

int vmp_vq_resume(struct vmp_vq *vq, uint16_t last_avail, uint16_t used_idx)
{
	int r = vmp_vq_enable(vq);
	if (r < 0)
		return r;
	vq->last_avail = last_avail;
	vq->used_idx = used_idx;
	/* The same check as every pop, now: a snapshot whose indices do not
	 * match its rings fails here, not at the guest's first kick. */
	uint16_t idx = ld16(vq->avail, AVAIL_IDX, __ATOMIC_ACQUIRE);
	if ((uint16_t)(idx - last_avail) > vq->num) {
		vmp_vq_set_broken(vq, "restored avail index out of range");
		return -EINVAL;
	}
	return 0;
}

void vmp_vq_disable(struct vmp_vq *vq)
{
	vq->enabled = false;
}

bool vmp_vq_usable(const struct vmp_vq *vq)
{
	return vq->enabled && !vq->broken;
}

/* ---- consuming -------------------------------------------------------- */

/* How many chains the driver has made available; breaks the queue when
 * that is more than the queue can hold (the driver moved avail->idx past
 * entries it cannot have filled). */
static int avail_count(struct vmp_vq *vq)
{
	uint16_t idx = ld16(vq->avail, AVAIL_IDX, __ATOMIC_ACQUIRE);
	uint16_t pending = (uint16_t)(idx - vq->last_avail);
	if (pending > vq->num)
		return broken(vq, "avail->idx ahead by more than the queue size");
	return pending;
}

bool vmp_vq_has_avail(struct vmp_vq *vq)
{
	return vmp_vq_usable(vq) && avail_count(vq) > 0;
}

int vmp_vq_pop(struct vmp_vq *vq, struct vmp_vq_elem *e)
{
	if (vq->broken)
		return -EIO;
	if (!vq->enabled)
		return 0;
	int pending = avail_count(vq);
	if (pending <= 0)
		return pending;

	uint16_t slot = vq->last_avail & (vq->num - 1);
	uint16_t head = ld16(vq->avail, AVAIL_RING + 2 * (size_t)slot, __ATOMIC_RELAXED);
	if (head >= vq->num)
		return broken(vq, "head index >= queue size");

	e->head = head;
	e->nread = e->nwrite = 0;
	e->read_len = e->write_len = 0;
	uint16_t i = head;
	/* A chain visits each descriptor at most once, so more than num of
	 * them is a loop (or a chain no correct driver builds): this bound
	 * alone ends every cycle without remembering which were seen. */
	for (unsigned count = 0;; count++) {
		if (count >= vq->num)
			return broken(vq, "descriptor chain longer than the queue (loop)");
		struct desc d = ld_desc(vq, i);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return broken(vq, "INDIRECT descriptor (not negotiated)");
		bool writable = d.flags & VRING_DESC_F_WRITE;
		if (!writable && e->nwrite)
			return broken(vq, "readable descriptor after a writable one");
		if (d.len) {
			if (e->nread + e->nwrite >= VMP_VQ_MAX_SEGS)
				return broken(vq, "descriptor chain of more than 256 "
						  "segments");
			void *p = vq->xlate(vq->xlate_opaque, d.addr, d.len);
			if (!p)
				return broken(vq, "buffer outside guest RAM");
			struct iovec *v = &e->iov[e->nread + e->nwrite];
			v->iov_base = p;
			v->iov_len = d.len;
			if (writable) {
				e->nwrite++;
				e->write_len += d.len;
			} else {
				e->nread++;
				e->read_len += d.len;
			}
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		if (d.next >= vq->num)
			return broken(vq, "next index >= queue size");
		i = d.next;
	}
	vq->last_avail++;
	return 1;
}

int vmp_vq_push(struct vmp_vq *vq, uint16_t head, uint32_t written)
{
	if (!vmp_vq_usable(vq))
		return -EIO;
	if (head >= vq->num)
		return -EINVAL;
	size_t at = USED_RING + 8 * (size_t)(vq->used_idx & (vq->num - 1));
	st32(vq->used, at, head);
	st32(vq->used, at + 4, written);
	vq->used_idx++;
	st16(vq->used, USED_IDX, vq->used_idx, __ATOMIC_RELEASE);
	return 0;
}

bool vmp_vq_needs_notify(struct vmp_vq *vq)
{
	if (!vmp_vq_usable(vq))
		return false;
	/* Store used->idx, then load avail->flags: a store-load order, which
	 * only a full fence gives (x86 reorders it otherwise). Linux's driver
	 * does the mirror image (virtqueue_enable_cb: clear the flag, mb,
	 * re-check used->idx), so one of the two sides sees the other. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(ld16(vq->avail, AVAIL_FLAGS, __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);
}

/* ---- copying in and out of a chain ---------------------------------- */

static size_t iov_copy(const struct iovec *iov, unsigned n, uint64_t off,
		       void *buf, size_t len, bool to_iov)
{
	size_t done = 0;
	for (unsigned k = 0; k < n && done < len; k++) {
		if (off >= iov[k].iov_len) {
			off -= iov[k].iov_len;
			continue;
		}
		size_t take = iov[k].iov_len - off;
		if (take > len - done)
			take = len - done;
		uint8_t *g = (uint8_t *)iov[k].iov_base + off;
		if (to_iov)
			memcpy(g, (const uint8_t *)buf + done, take);
		else
			memcpy((uint8_t *)buf + done, g, take);
		done += take;
		off = 0;
	}
	return done;
}

size_t vmp_vq_elem_read(const struct vmp_vq_elem *e, uint64_t off, void *buf,
			size_t len)
{
	return iov_copy(e->iov, e->nread, off, buf, len, false);
}

size_t vmp_vq_elem_write(const struct vmp_vq_elem *e, uint64_t off,
			 const void *buf, size_t len)
{
	return iov_copy(e->iov + e->nread, e->nwrite, off, (void *)buf, len, true);
}
