/* virtio_mmio.c - the virtio-mmio version 2 register file: see
 * virtio_mmio.h. Register offsets and status bits are the kernel's uapi
 * names (linux/virtio_mmio.h, linux/virtio_config.h), which follow the
 * spec's table in §4.2.2. */
#include <errno.h>
#include <string.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "devices/virtio_mmio.h"

#define MMIO_MAGIC 0x74726976u /* "virt" */
#define MMIO_VERSION 2u

static void on_vq_broken(void *opaque, struct vmp_vq *vq)
{
	vmp_virtio_mmio_needs_reset(opaque, vq->broken_why);
}

int vmp_virtio_mmio_init(struct vmp_virtio_mmio *d,
			 const struct vmp_virtio_dev_ops *ops, void *dev,
			 vmp_gpa_xlate_fn xlate, void *xlate_opaque,
			 void (*raise_irq)(void *opaque), void *irq_opaque)
{
	memset(d, 0, sizeof(*d));
	if (!ops || !xlate || ops->nqueues == 0 || ops->nqueues > VMP_VIRTIO_MAX_QUEUES ||
	    ops->queue_max == 0 || ops->queue_max > VMP_VQ_MAX_SIZE)
		return -EINVAL;
	d->ops = ops;
	d->dev = dev;
	d->raise_irq = raise_irq;
	d->irq_opaque = irq_opaque;
	/* VERSION_1 always: a version 2 transport with a driver that does not
	 * accept it is refused at FEATURES_OK (Linux refuses such a device
	 * itself, in vm_finalize_features). */
	d->device_features = ops->features | (1ull << VIRTIO_F_VERSION_1);
	for (unsigned q = 0; q < VMP_VIRTIO_MAX_QUEUES; q++)
		vmp_vq_init(&d->vq[q], q < ops->nqueues ? ops->queue_max : 0, xlate,
			    xlate_opaque, on_vq_broken, d);
	return 0;
}

void vmp_virtio_mmio_reset(struct vmp_virtio_mmio *d)
{
	for (unsigned q = 0; q < VMP_VIRTIO_MAX_QUEUES; q++) {
		vmp_vq_reset(&d->vq[q]);
		d->queue_ready[q] = false;
	}
	d->driver_features = 0;
	d->device_features_sel = d->driver_features_sel = 0;
	d->queue_sel = 0;
	d->status = 0;
	d->interrupt_status = 0;
	d->broken_why = NULL;
	if (d->ops->reset)
		d->ops->reset(d->dev);
}

uint32_t vmp_virtio_mmio_status(const struct vmp_virtio_mmio *d)
{
	return d->status;
}

uint64_t vmp_virtio_mmio_driver_features(const struct vmp_virtio_mmio *d)
{
	return d->driver_features;
}

const char *vmp_virtio_mmio_broken_reason(const struct vmp_virtio_mmio *d)
{
	return d->broken_why;
}

bool vmp_virtio_mmio_live(const struct vmp_virtio_mmio *d)
{
	uint32_t need = VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FEATURES_OK;
	uint32_t bad = VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED;
	return (d->status & need) == need && !(d->status & bad);
}

struct vmp_vq *vmp_virtio_mmio_queue(struct vmp_virtio_mmio *d, unsigned q)
{
	return q < d->ops->nqueues ? &d->vq[q] : NULL;
}

static void interrupt(struct vmp_virtio_mmio *d, uint32_t why)
{
	d->interrupt_status |= why;
	if (d->raise_irq)
		d->raise_irq(d->irq_opaque);
}

void vmp_virtio_mmio_used(struct vmp_virtio_mmio *d, struct vmp_vq *vq)
{
	if (vmp_vq_needs_notify(vq))
		interrupt(d, VIRTIO_MMIO_INT_VRING);
}

void vmp_virtio_mmio_needs_reset(struct vmp_virtio_mmio *d, const char *why)
{
	if (d->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	d->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	d->broken_why = why;
	if (d->restoring)
		return; /* the restore fails and resets; nobody is told */
	/* Stop every queue, not only the one found broken: the device as a
	 * whole is in an unknown state until the driver resets it. */
	for (unsigned q = 0; q < d->ops->nqueues; q++)
		vmp_vq_disable(&d->vq[q]);
	if (d->status & VIRTIO_CONFIG_S_DRIVER_OK)
		interrupt(d, VIRTIO_MMIO_INT_CONFIG);
	if (d->ops->failed)
		d->ops->failed(d->dev, why);
}

void vmp_virtio_mmio_notify(struct vmp_virtio_mmio *d, unsigned q)
{
	if (q >= d->ops->nqueues || !vmp_virtio_mmio_live(d) || !vmp_vq_usable(&d->vq[q]))
		return;
	if (d->ops->queue_notify)
		d->ops->queue_notify(d->dev, q);
}

/* ---- registers -------------------------------------------------------- */

static struct vmp_vq *sel_vq(struct vmp_virtio_mmio *d)
{
	return d->queue_sel < d->ops->nqueues ? &d->vq[d->queue_sel] : NULL;
}

static uint32_t reg_read(struct vmp_virtio_mmio *d, uint64_t off)
{
	struct vmp_vq *vq = sel_vq(d);
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VMP_VIRTIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (d->device_features_sel > 1)
			return 0;
		return (uint32_t)(d->device_features >> (32 * d->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		/* 0 says "no such queue" (§4.2.3.2). */
		return vq ? vq->num_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? d->queue_ready[d->queue_sel] : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		if (d->ops->vring_irq_elsewhere && vmp_virtio_mmio_live(d))
			return d->interrupt_status | VIRTIO_MMIO_INT_VRING;
		return d->interrupt_status;
	case VIRTIO_MMIO_STATUS:
		return d->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_generation;
	/* The driver's own queue registers read back what it wrote. */
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		return vq ? (uint32_t)vq->desc_gpa : 0;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		return vq ? (uint32_t)(vq->desc_gpa >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		return vq ? (uint32_t)vq->avail_gpa : 0;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		return vq ? (uint32_t)(vq->avail_gpa >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		return vq ? (uint32_t)vq->used_gpa : 0;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		return vq ? (uint32_t)(vq->used_gpa >> 32) : 0;
	default:
		/* Write-only registers, SHM (no shared memory regions: SHMLen
		 * reads as 0 would say "-1 for none" only in 1.2; 0 is what a
		 * device without the feature returns) and holes. */
		return 0;
	}
}

static void set_lo(uint64_t *r, uint32_t v)
{
	*r = (*r & ~0xffffffffull) | v;
}

static void set_hi(uint64_t *r, uint32_t v)
{
	*r = (*r & 0xffffffffull) | ((uint64_t)v << 32);
}

static void write_status(struct vmp_virtio_mmio *d, uint32_t v)
{
	if (v == 0) {
		vmp_virtio_mmio_reset(d);
		return;
	}
	uint32_t old = d->status;
	/* NEEDS_RESET is the device's bit; the driver cannot set or clear it. */
	uint32_t now = (v & ~(uint32_t)VIRTIO_CONFIG_S_NEEDS_RESET) |
		       (old & VIRTIO_CONFIG_S_NEEDS_RESET);
	if ((now & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* Features are accepted only if they are a subset of what we
		 * offer and include VERSION_1; otherwise FEATURES_OK does not
		 * stick and the driver, reading it back, gives up (§3.1.1). */
		bool ok = !(d->driver_features & ~d->device_features) &&
			  (d->driver_features & (1ull << VIRTIO_F_VERSION_1));
		if (!ok)
			now &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
	}
	d->status = now;
	if ((now & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		/* Buffers made available before DRIVER_OK were not consumed
		 * (§3.1.1: the device must not use the queues before it); now
		 * they are. Linux's virtio_console kicks its receive queue
		 * during probe, before virtio_device_ready. */
		for (unsigned q = 0; q < d->ops->nqueues; q++)
			vmp_virtio_mmio_notify(d, q);
	}
}

static void reg_write(struct vmp_virtio_mmio *d, uint64_t off, uint32_t v)
{
	struct vmp_vq *vq = sel_vq(d);
	/* Queue layout registers are only taken while the queue is not ready
	 * (§4.2.2.3: the driver must not change them after): enabling pinned
	 * its host pointers to these addresses. */
	bool vq_writable = vq && !d->queue_ready[d->queue_sel];
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->status & VIRTIO_CONFIG_S_FEATURES_OK)
			break; /* negotiation is over */
		if (d->driver_features_sel == 0)
			set_lo(&d->driver_features, v);
		else if (d->driver_features_sel == 1)
			set_hi(&d->driver_features, v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (vq_writable)
			vq->num = v > 0xffff ? 0 : (uint16_t)v; /* 0: fails at ready */
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!vq)
			break;
		if (v == 1 && !d->queue_ready[d->queue_sel]) {
			d->queue_ready[d->queue_sel] = true;
			/* A bad layout breaks the queue, which sets NEEDS_RESET
			 * through on_vq_broken. */
			if (!(d->status & VIRTIO_CONFIG_S_NEEDS_RESET))
				vmp_vq_enable(vq);
		} else if (v == 0) {
			d->queue_ready[d->queue_sel] = false;
			vmp_vq_disable(vq);
		}
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Reached only without an ioeventfd for this queue. */
		vmp_virtio_mmio_notify(d, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		d->interrupt_status &= ~v;
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(d, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if (vq_writable)
			set_lo(&vq->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (vq_writable)
			set_hi(&vq->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if (vq_writable)
			set_lo(&vq->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (vq_writable)
			set_hi(&vq->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if (vq_writable)
			set_lo(&vq->used_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (vq_writable)
			set_hi(&vq->used_gpa, v);
		break;
	default:
		break; /* read-only registers and holes */
	}
}

void vmp_virtio_mmio_read(void *opaque, uint64_t offset, void *data, unsigned size)
{
	struct vmp_virtio_mmio *d = opaque;
	uint32_t v = 0;
	if (size > 8)
		return;
	if (offset >= VIRTIO_MMIO_CONFIG) {
		if ((size == 1 || size == 2 || size == 4) && d->ops->config_read &&
		    offset - VIRTIO_MMIO_CONFIG < VMP_VIRTIO_MMIO_SIZE)
			v = d->ops->config_read(d->dev, (uint32_t)(offset - VIRTIO_MMIO_CONFIG),
						size);
	} else if (size == 4 && offset % 4 == 0) {
		v = reg_read(d, offset);
	}
	/* Little-endian guest and host: the low `size` bytes of v. */
	memset(data, 0, size);
	memcpy(data, &v, size < 4 ? size : 4);
}

void vmp_virtio_mmio_write(void *opaque, uint64_t offset, const void *data,
			   unsigned size)
{
	struct vmp_virtio_mmio *d = opaque;
	if (size != 4 || offset % 4 != 0 || offset >= VIRTIO_MMIO_CONFIG)
		return; /* config space is read-only here; see the ops */
	uint32_t v;
	memcpy(&v, data, 4);
	reg_write(d, offset, v);
}

/* ---- snapshots --------------------------------------------------------- */

void vmp_virtio_mmio_save(const struct vmp_virtio_mmio *d, struct snap_virtio_dev *s)
{
	memset(s, 0, sizeof(*s));
	s->device_id = d->ops->device_id;
	s->nqueues = d->ops->nqueues;
	s->status = d->status;
	s->interrupt_status = d->interrupt_status;
	s->config_generation = d->config_generation;
	s->device_features_sel = d->device_features_sel;
	s->driver_features_sel = d->driver_features_sel;
	s->queue_sel = d->queue_sel;
	s->device_features = d->device_features;
	s->driver_features = d->driver_features;
	for (unsigned q = 0; q < d->ops->nqueues; q++) {
		const struct vmp_vq *vq = &d->vq[q];
		s->q[q] = (struct snap_virtio_queue){
			.desc_gpa = vq->desc_gpa, .avail_gpa = vq->avail_gpa,
			.used_gpa = vq->used_gpa, .num = vq->num,
			.last_avail = vq->last_avail, .used_idx = vq->used_idx,
			.ready = d->queue_ready[q], .enabled = vq->enabled,
		};
	}
}

int vmp_virtio_mmio_restore(struct vmp_virtio_mmio *d, const struct snap_virtio_dev *s)
{
	vmp_virtio_mmio_reset(d);
	if (s->device_id != d->ops->device_id ||
	    s->nqueues != d->ops->nqueues || s->device_features != d->device_features ||
	    (s->driver_features & ~d->device_features) ||
	    (s->status & VIRTIO_CONFIG_S_NEEDS_RESET) ||
	    (s->interrupt_status & ~(uint32_t)(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)))
		return -EINVAL;
	d->status = s->status;
	d->interrupt_status = s->interrupt_status;
	d->config_generation = s->config_generation;
	d->device_features_sel = s->device_features_sel;
	d->driver_features_sel = s->driver_features_sel;
	d->queue_sel = s->queue_sel;
	d->driver_features = s->driver_features;
	d->restoring = true;
	for (unsigned q = 0; q < d->ops->nqueues; q++) {
		const struct snap_virtio_queue *qs = &s->q[q];
		struct vmp_vq *vq = &d->vq[q];
		vq->desc_gpa = qs->desc_gpa;
		vq->avail_gpa = qs->avail_gpa;
		vq->used_gpa = qs->used_gpa;
		vq->num = qs->num;
		d->queue_ready[q] = qs->ready;
		if (qs->enabled && vmp_vq_resume(vq, qs->last_avail, qs->used_idx) < 0) {
			d->restoring = false;
			vmp_virtio_mmio_reset(d);
			return -EINVAL;
		}
	}
	d->restoring = false;
	return 0;
}

void vmp_virtio_mmio_repost_irq(struct vmp_virtio_mmio *d)
{
	if (d->interrupt_status && d->raise_irq)
		d->raise_irq(d->irq_opaque);
}
