/* virtio_console.c - single-port virtio-console: see virtio_console.h. */
#include <errno.h>
#include <string.h>

#include <linux/virtio_ids.h>

#include "devices/virtio_console.h"

/* transmitq: hand every chain's readable bytes to the host and return the
 * chain (used length 0: the device wrote nothing into it). */
static void process_tx(struct vmp_console *c)
{
	struct vmp_vq *vq = vmp_virtio_mmio_queue(&c->mmio, VMP_CONSOLE_TX);
	struct vmp_vq_elem *e = &c->tx_elem;
	bool pushed = false;
	while (vmp_vq_pop(vq, e) == 1) {
		for (unsigned k = 0; k < e->nread; k++)
			c->cbs.on_guest_data(c->opaque, e->iov[k].iov_base,
					     e->iov[k].iov_len);
		/* If the queue broke meanwhile (a write from inside the
		 * callback found the receive ring broken: the whole device
		 * needs a reset), push fails with -EIO and the chain is
		 * dropped with the device. */
		if (vmp_vq_push(vq, e->head, 0) == 0)
			pushed = true;
	}
	if (pushed)
		vmp_virtio_mmio_used(&c->mmio, vq);
}

static void console_notify(void *dev, unsigned q)
{
	struct vmp_console *c = dev;
	if (q == VMP_CONSOLE_TX)
		process_tx(c);
	else if (q == VMP_CONSOLE_RX && c->cbs.on_guest_space)
		c->cbs.on_guest_space(c->opaque);
}

static void console_reset(void *dev)
{
	struct vmp_console *c = dev;
	if (c->cbs.on_reset)
		c->cbs.on_reset(c->opaque);
}

static void console_failed(void *dev, const char *why)
{
	struct vmp_console *c = dev;
	if (c->cbs.on_failed)
		c->cbs.on_failed(c->opaque, why);
}

int vmp_console_init(struct vmp_console *c, const struct vmp_console_cbs *cbs,
		     void *opaque, vmp_gpa_xlate_fn xlate, void *xlate_opaque,
		     void (*raise_irq)(void *opaque), void *irq_opaque)
{
	memset(c, 0, sizeof(*c));
	if (!cbs || !cbs->on_guest_data)
		return -EINVAL;
	c->cbs = *cbs;
	c->opaque = opaque;
	c->ops = (struct vmp_virtio_dev_ops){
		.device_id = VIRTIO_ID_CONSOLE,
		.features = 0, /* VERSION_1 only, added by the transport */
		.nqueues = 2,
		.queue_max = VMP_CONSOLE_QUEUE_SIZE,
		.config_read = NULL, /* zeros: no SIZE, no MULTIPORT */
		.queue_notify = console_notify,
		.reset = console_reset, /* no state of its own beyond the queues */
		.failed = console_failed,
	};
	return vmp_virtio_mmio_init(&c->mmio, &c->ops, c, xlate, xlate_opaque,
				    raise_irq, irq_opaque);
}

bool vmp_console_can_write(struct vmp_console *c)
{
	struct vmp_vq *vq = vmp_virtio_mmio_queue(&c->mmio, VMP_CONSOLE_RX);
	return vmp_virtio_mmio_live(&c->mmio) && vmp_vq_has_avail(vq);
}

size_t vmp_console_write(struct vmp_console *c, const void *buf, size_t len)
{
	struct vmp_vq *vq = vmp_virtio_mmio_queue(&c->mmio, VMP_CONSOLE_RX);
	struct vmp_vq_elem *e = &c->rx_elem;
	const uint8_t *p = buf;
	size_t done = 0;
	bool pushed = false;
	if (!vmp_virtio_mmio_live(&c->mmio))
		return 0;
	while (done < len && vmp_vq_pop(vq, e) == 1) {
		/* A receive chain with no writable byte is odd but harmless:
		 * it is returned empty, and the loop goes on. */
		size_t want = len - done;
		if (want > UINT32_MAX) /* the used length is 32 bits */
			want = UINT32_MAX;
		size_t n = vmp_vq_elem_write(e, 0, p + done, want);
		if (vmp_vq_push(vq, e->head, (uint32_t)n) < 0)
			break;
		pushed = true;
		done += n;
	}
	if (pushed)
		vmp_virtio_mmio_used(&c->mmio, vq);
	return done;
}
