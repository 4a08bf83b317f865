/* virtio_console.h - a single-port virtio-console (device type 3) as a
 * byte stream between the host and the guest's /dev/hvc0.
 *
 * No VIRTIO_CONSOLE_F_SIZE, F_MULTIPORT or F_EMERG_WRITE: two queues,
 * receiveq 0 (host -> guest: the guest posts writable buffers, the host
 * fills them) and transmitq 1 (guest -> host). The config space reads as
 * zeros (the driver reads none of it without those features).
 *
 * Guest -> host: Linux's hvc driver busy-waits, with a spinlock held and
 * interrupts off, until the host returns each transmit buffer
 * (__send_to_port in drivers/char/virtio_console.c). So every transmit
 * chain is handed to on_guest_data and returned at once when the queue is
 * notified; there is no holding back. on_guest_data must take all the
 * bytes (copy them, or parse them: agent_chan.h does).
 *
 * Host -> guest: vmp_console_write() copies into the buffers the guest has
 * posted and returns how much fitted; when the guest posts more,
 * on_guest_space is called so the writer can go on.
 *
 * Lifecycle: vmp_console_init() (no allocation; nothing to free; the
 * struct must not move afterwards); wire c->mmio as virtio_mmio.h says;
 * the guest resets and sets up the device as it likes.
 *
 * Locking: as virtio_mmio.h: every call, and every callback, under the
 * VM's device-bus mutex. Callbacks must not call back into the console
 * except vmp_console_write (from on_guest_space) and the queries.
 */
#ifndef HATCHERY_VMP_VIRTIO_CONSOLE_H
#define HATCHERY_VMP_VIRTIO_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio_mmio.h"

#define VMP_CONSOLE_QUEUE_SIZE 128 /* QueueNumMax of both queues */
#define VMP_CONSOLE_RX 0           /* receiveq: host -> guest */
#define VMP_CONSOLE_TX 1           /* transmitq: guest -> host */

struct vmp_console_cbs {
	/* Bytes the guest wrote, in order, possibly in several calls per
	 * buffer. Called with len > 0. */
	void (*on_guest_data)(void *opaque, const uint8_t *data, size_t len);
	/* The guest posted receive buffers (vmp_console_write may now take
	 * more). May be NULL. */
	void (*on_guest_space)(void *opaque);
	/* The guest reset the device (Linux does at probe; later, the byte
	 * stream lost whatever was in flight). May be NULL. */
	void (*on_reset)(void *opaque);
	/* A ring was broken: the device needs a reset and moves no more bytes
	 * until the guest resets it (hatchery ends the VM: GUEST_FAULT). why
	 * is a static string. May be NULL. */
	void (*on_failed)(void *opaque, const char *why);
};

struct vmp_console {
	struct vmp_virtio_mmio mmio; /* register this with the bus */
	/* Private below. */
	struct vmp_virtio_dev_ops ops;
	struct vmp_console_cbs cbs;
	void *opaque;
	/* Scratch for one popped chain each (4 KiB): two, because
	 * on_guest_data may write (an agent's reply) while a transmit chain
	 * is being read. */
	struct vmp_vq_elem rx_elem, tx_elem;
};

/* cbs is copied; opaque, the translation's opaque and irq_opaque are
 * borrowed. raise_irq may be replaced later (vmp_virtio_kvm_attach).
 * Returns 0 or -EINVAL. */
int vmp_console_init(struct vmp_console *c, const struct vmp_console_cbs *cbs,
		     void *opaque, vmp_gpa_xlate_fn xlate, void *xlate_opaque,
		     void (*raise_irq)(void *opaque), void *irq_opaque);

/* Copy up to len bytes into the guest's posted receive buffers; each
 * buffer used is returned at once (the guest sees the bytes without
 * waiting for it to fill) and the guest is interrupted once at the end.
 * Returns the bytes taken: 0 when no buffer is posted or the device is not
 * live (before DRIVER_OK, after NEEDS_RESET). */
size_t vmp_console_write(struct vmp_console *c, const void *buf, size_t len);

/* Has the guest posted at least one receive buffer? */
bool vmp_console_can_write(struct vmp_console *c);

#endif
