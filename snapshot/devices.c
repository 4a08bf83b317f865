/* devices.c - the devices section (type 38) of a Linux guest's snapshot
 * (docs/snapshot.md, "The devices section"): encode, decode, check.
 *
 * The checks are what the devices would accept had the guest written the
 * registers itself (vmp_virtio_mmio_restore, vmp_vq_enable): the writer
 * runs them on the state it is given, the parser on what it decoded, so a
 * file this build writes is a file it reads. What needs guest memory (the
 * rings' indices against the avail ring) or the device's own offer (its
 * features, QueueNumMax) is left to vmproc's restore. Pure: no KVM.
 */
#include <stdio.h>

#include "layout.h"

_Static_assert(DUART_RESERVED <= DUART_SIZE && DEV_UART + DUART_SIZE == DEV_I8042,
	       "the UART record fits");
_Static_assert(DEV_I8042 + DI8042_SIZE == DEV_AGENT, "the i8042 record fits");
_Static_assert(DEV_AGENT + DAGENT_SIZE == DEV_RESERVED, "the agent record fits");
_Static_assert(VQ_SIZE == 32 && VDEV_SIZE == VDEV_QUEUES + SNAP_VIRTIO_MAX_QUEUES * VQ_SIZE,
	       "a device record holds every queue record");
_Static_assert(DEV_FIXED_SIZE % 8 == 0 && VDEV_SIZE % 8 == 0, "records are 8-byte aligned");

#define FAIL(...) hatch_err_set(err, E_INVAL, 0, "snapshot: " __VA_ARGS__)

/* Device status bits (virtio 1.1 §2.1). */
#define ST_ACKNOWLEDGE 0x01u
#define ST_DRIVER 0x02u
#define ST_DRIVER_OK 0x04u
#define ST_FEATURES_OK 0x08u
#define ST_KNOWN (ST_ACKNOWLEDGE | ST_DRIVER | ST_DRIVER_OK | ST_FEATURES_OK)
#define ST_NEEDS_RESET 0x40u
#define ST_FAILED 0x80u
/* InterruptStatus: used buffer notification | configuration change. */
#define INT_KNOWN 0x3u

static bool queue_is_zero(const struct snap_virtio_queue *q)
{
	return !q->desc_gpa && !q->avail_gpa && !q->used_gpa && !q->num && !q->last_avail &&
	       !q->used_idx && !q->ready && !q->enabled;
}

/* One ring area of an enabled queue: inside one slot of guest RAM (the
 * length cannot overflow: num <= 256). */
static int check_ring(uint64_t mem_size, unsigned i, unsigned k, const char *what,
		      uint64_t gpa, uint64_t len, struct hatch_err *err)
{
	if (!snap_gpa_in_ram(mem_size, gpa, len))
		return FAIL("devices: virtio %u queue %u: %s at 0x%llx (0x%llx bytes) is outside guest RAM (0x%llx bytes)",
			    i, k, what, (unsigned long long)gpa, (unsigned long long)len,
			    (unsigned long long)mem_size);
	return 0;
}

static int check_queue(const struct snap_virtio_dev *v, unsigned i, unsigned k,
		       uint64_t mem_size, struct hatch_err *err)
{
	const struct snap_virtio_queue *q = &v->q[k];
	if (k >= v->nqueues) {
		if (!queue_is_zero(q))
			return FAIL("devices: virtio %u queue %u: not zero, the device has %u queues",
				    i, k, v->nqueues);
		return 0;
	}
	/* Split rings index modulo num with free-running 16-bit counters
	 * (virtio 1.1 §2.6): a power of 2. */
	if (q->num & (q->num - 1))
		return FAIL("devices: virtio %u queue %u: size %u is not a power of 2", i, k, q->num);
	if (q->num > SNAP_VIRTIO_MAX_QUEUE_SIZE)
		return FAIL("devices: virtio %u queue %u: size %u, at most %u", i, k, q->num,
			    SNAP_VIRTIO_MAX_QUEUE_SIZE);
	if (q->enabled && !q->ready)
		return FAIL("devices: virtio %u queue %u: enabled but not ready", i, k);
	if (q->enabled && !q->num)
		return FAIL("devices: virtio %u queue %u: enabled with size 0", i, k);
	if (q->enabled && !(v->status & ST_DRIVER_OK))
		return FAIL("devices: virtio %u queue %u: enabled but the device status 0x%x lacks DRIVER_OK",
			    i, k, v->status);
	if (q->desc_gpa % 16)
		return FAIL("devices: virtio %u queue %u: descriptor table at 0x%llx is not 16-byte aligned",
			    i, k, (unsigned long long)q->desc_gpa);
	if (q->avail_gpa % 2)
		return FAIL("devices: virtio %u queue %u: available ring at 0x%llx is not 2-byte aligned",
			    i, k, (unsigned long long)q->avail_gpa);
	if (q->used_gpa % 4)
		return FAIL("devices: virtio %u queue %u: used ring at 0x%llx is not 4-byte aligned",
			    i, k, (unsigned long long)q->used_gpa);
	if (!q->enabled)
		return 0;
	/* The sizes vmp_vq_enable maps: with used_event/avail_event. */
	uint64_t n = q->num;
	if (check_ring(mem_size, i, k, "descriptor table", q->desc_gpa, 16 * n, err) < 0 ||
	    check_ring(mem_size, i, k, "available ring", q->avail_gpa, 6 + 2 * n, err) < 0 ||
	    check_ring(mem_size, i, k, "used ring", q->used_gpa, 6 + 8 * n, err) < 0)
		return -1;
	return 0;
}

static int check_virtio(const struct snap_virtio_dev *v, unsigned i, uint64_t mem_size,
			struct hatch_err *err)
{
	if (v->device_id == 0)
		return FAIL("devices: virtio %u: device id 0", i);
	if (v->nqueues == 0 || v->nqueues > SNAP_VIRTIO_MAX_QUEUES)
		return FAIL("devices: virtio %u: %u queues, must be 1..%d", i, v->nqueues,
			    SNAP_VIRTIO_MAX_QUEUES);
	/* A device that needs a reset, or that its driver gave up on, is not
	 * one to clone. */
	if (v->status & ST_NEEDS_RESET)
		return FAIL("devices: virtio %u: status 0x%x has DEVICE_NEEDS_RESET (0x40)", i,
			    v->status);
	if (v->status & ST_FAILED)
		return FAIL("devices: virtio %u: status 0x%x has FAILED (0x80)", i, v->status);
	if (v->status & ~ST_KNOWN)
		return FAIL("devices: virtio %u: status 0x%x has bits other than 0x%x", i, v->status,
			    ST_KNOWN);
	if (v->interrupt_status & ~INT_KNOWN)
		return FAIL("devices: virtio %u: interrupt status 0x%x, at most 0x%x", i,
			    v->interrupt_status, INT_KNOWN);
	if (v->driver_features & ~v->device_features)
		return FAIL("devices: virtio %u: driver features 0x%llx are not a subset of device features 0x%llx",
			    i, (unsigned long long)v->driver_features,
			    (unsigned long long)v->device_features);
	if (v->queue_sel >= SNAP_VIRTIO_MAX_QUEUES)
		return FAIL("devices: virtio %u: queue_sel %u, must be < %d", i, v->queue_sel,
			    SNAP_VIRTIO_MAX_QUEUES);
	for (unsigned k = 0; k < SNAP_VIRTIO_MAX_QUEUES; k++)
		if (check_queue(v, i, k, mem_size, err) < 0)
			return -1;
	return 0;
}

int snap_devices_check(const struct snap_devices *d, uint64_t mem_size,
		       struct hatch_err *err)
{
	if (d->machine != SNAP_MACHINE_LINUX)
		return FAIL("devices: machine %u, this build knows %d (Linux guest)", d->machine,
			    SNAP_MACHINE_LINUX);
	if (d->nvirtio == 0 || d->nvirtio > SNAP_MAX_VIRTIO)
		return FAIL("devices: %u virtio devices, must be 1..%d", d->nvirtio, SNAP_MAX_VIRTIO);
	for (unsigned i = 0; i < d->nvirtio; i++)
		if (check_virtio(&d->virtio[i], i, mem_size, err) < 0)
			return -1;
	return 0;
}

void snap_devices_encode(const struct snap_devices *d, uint8_t *out)
{
	memset(out, 0, DEV_LEN(d->nvirtio));
	put32(out + DEV_MAGIC, DEV_MAGIC_VALUE);
	put32(out + DEV_VERSION, DEV_PAYLOAD_VERSION);
	put32(out + DEV_MACHINE, d->machine);
	put32(out + DEV_NVIRTIO, d->nvirtio);
	uint8_t *u = out + DEV_UART;
	u[DUART_IER] = d->uart.ier;
	u[DUART_LCR] = d->uart.lcr;
	u[DUART_MCR] = d->uart.mcr;
	u[DUART_SCR] = d->uart.scr;
	u[DUART_FCR] = d->uart.fcr;
	u[DUART_DLL] = d->uart.dll;
	u[DUART_DLM] = d->uart.dlm;
	u[DUART_THR_PENDING] = d->uart.thr_pending;
	u[DUART_IRQ_LEVEL] = d->uart.irq_level;
	put64(out + DEV_AGENT + DAGENT_BYTES_IN, d->agent.bytes_in);
	put64(out + DEV_AGENT + DAGENT_BYTES_OUT, d->agent.bytes_out);
	for (unsigned i = 0; i < d->nvirtio; i++) {
		const struct snap_virtio_dev *v = &d->virtio[i];
		uint8_t *r = out + DEV_LEN(i);
		put32(r + VDEV_DEVICE_ID, v->device_id);
		put32(r + VDEV_NQUEUES, v->nqueues);
		put32(r + VDEV_STATUS, v->status);
		put32(r + VDEV_INTERRUPT_STATUS, v->interrupt_status);
		put32(r + VDEV_CONFIG_GENERATION, v->config_generation);
		put32(r + VDEV_DEVICE_FEATURES_SEL, v->device_features_sel);
		put32(r + VDEV_DRIVER_FEATURES_SEL, v->driver_features_sel);
		put32(r + VDEV_QUEUE_SEL, v->queue_sel);
		put64(r + VDEV_DEVICE_FEATURES, v->device_features);
		put64(r + VDEV_DRIVER_FEATURES, v->driver_features);
		for (unsigned k = 0; k < SNAP_VIRTIO_MAX_QUEUES; k++) {
			const struct snap_virtio_queue *q = &v->q[k];
			uint8_t *e = r + VDEV_QUEUES + k * VQ_SIZE;
			put64(e + VQ_DESC, q->desc_gpa);
			put64(e + VQ_AVAIL, q->avail_gpa);
			put64(e + VQ_USED, q->used_gpa);
			put16(e + VQ_NUM, q->num);
			put16(e + VQ_LAST_AVAIL, q->last_avail);
			put16(e + VQ_USED_IDX, q->used_idx);
			e[VQ_READY] = q->ready;
			e[VQ_ENABLED] = q->enabled;
		}
	}
}

/* A byte that holds a bool: 0 or 1, nothing else. */
static int get_bool(uint8_t b, bool *out, const char *what, struct hatch_err *err)
{
	if (b > 1)
		return FAIL("devices: %s %u, must be 0 or 1", what, b);
	*out = b;
	return 0;
}

static int check_zero(const uint8_t *p, size_t from, size_t to, const char *what,
		      struct hatch_err *err)
{
	for (size_t i = from; i < to; i++)
		if (p[i])
			return FAIL("devices: %s byte %zu is not zero", what, i);
	return 0;
}

/* Device record i into *v; the bytes that hold bools must be 0 or 1. */
static int decode_virtio(const uint8_t *r, unsigned i, struct snap_virtio_dev *v,
			 struct hatch_err *err)
{
	v->device_id = get32(r + VDEV_DEVICE_ID);
	v->nqueues = get32(r + VDEV_NQUEUES);
	v->status = get32(r + VDEV_STATUS);
	v->interrupt_status = get32(r + VDEV_INTERRUPT_STATUS);
	v->config_generation = get32(r + VDEV_CONFIG_GENERATION);
	v->device_features_sel = get32(r + VDEV_DEVICE_FEATURES_SEL);
	v->driver_features_sel = get32(r + VDEV_DRIVER_FEATURES_SEL);
	v->queue_sel = get32(r + VDEV_QUEUE_SEL);
	v->device_features = get64(r + VDEV_DEVICE_FEATURES);
	v->driver_features = get64(r + VDEV_DRIVER_FEATURES);
	for (unsigned k = 0; k < SNAP_VIRTIO_MAX_QUEUES; k++) {
		struct snap_virtio_queue *q = &v->q[k];
		const uint8_t *e = r + VDEV_QUEUES + k * VQ_SIZE;
		char what[48];
		q->desc_gpa = get64(e + VQ_DESC);
		q->avail_gpa = get64(e + VQ_AVAIL);
		q->used_gpa = get64(e + VQ_USED);
		q->num = get16(e + VQ_NUM);
		q->last_avail = get16(e + VQ_LAST_AVAIL);
		q->used_idx = get16(e + VQ_USED_IDX);
		snprintf(what, sizeof(what), "virtio %u queue %u: ready", i, k);
		if (get_bool(e[VQ_READY], &q->ready, what, err) < 0)
			return -1;
		snprintf(what, sizeof(what), "virtio %u queue %u: enabled", i, k);
		if (get_bool(e[VQ_ENABLED], &q->enabled, what, err) < 0)
			return -1;
	}
	return 0;
}

int snap_devices_decode(const uint8_t *p, uint64_t len, uint64_t mem_size,
			struct snap_devices *d, struct hatch_err *err)
{
	memset(d, 0, sizeof(*d));
	if (len < DEV_FIXED_SIZE)
		return FAIL("devices: length %llu, shorter than its %d-byte fixed part",
			    (unsigned long long)len, DEV_FIXED_SIZE);
	if (get32(p + DEV_MAGIC) != DEV_MAGIC_VALUE)
		return FAIL("devices: bad magic 0x%08x, expected 0x%08x (\"HDV1\")",
			    get32(p + DEV_MAGIC), DEV_MAGIC_VALUE);
	uint32_t version = get32(p + DEV_VERSION);
	if (version != DEV_PAYLOAD_VERSION)
		return FAIL("devices section version %u, this build reads %d", version,
			    DEV_PAYLOAD_VERSION);
	d->machine = get32(p + DEV_MACHINE);
	if (d->machine != SNAP_MACHINE_LINUX)
		return FAIL("devices: machine %u, this build knows %d (Linux guest)", d->machine,
			    SNAP_MACHINE_LINUX);
	d->nvirtio = get32(p + DEV_NVIRTIO);
	if (d->nvirtio == 0 || d->nvirtio > SNAP_MAX_VIRTIO)
		return FAIL("devices: %u virtio devices, must be 1..%d", d->nvirtio, SNAP_MAX_VIRTIO);
	if (len != DEV_LEN(d->nvirtio))
		return FAIL("devices: length %llu, expected %llu for %u virtio devices",
			    (unsigned long long)len, (unsigned long long)DEV_LEN(d->nvirtio),
			    d->nvirtio);

	const uint8_t *u = p + DEV_UART;
	d->uart.ier = u[DUART_IER];
	d->uart.lcr = u[DUART_LCR];
	d->uart.mcr = u[DUART_MCR];
	d->uart.scr = u[DUART_SCR];
	d->uart.fcr = u[DUART_FCR];
	d->uart.dll = u[DUART_DLL];
	d->uart.dlm = u[DUART_DLM];
	if (get_bool(u[DUART_THR_PENDING], &d->uart.thr_pending, "uart thr_pending", err) < 0 ||
	    get_bool(u[DUART_IRQ_LEVEL], &d->uart.irq_level, "uart irq_level", err) < 0 ||
	    check_zero(u, DUART_RESERVED, DUART_SIZE, "uart reserved", err) < 0 ||
	    check_zero(p + DEV_I8042, 0, DI8042_SIZE, "i8042 (no state)", err) < 0 ||
	    check_zero(p, DEV_RESERVED, DEV_FIXED_SIZE, "reserved", err) < 0)
		return -1;
	d->agent.bytes_in = get64(p + DEV_AGENT + DAGENT_BYTES_IN);
	d->agent.bytes_out = get64(p + DEV_AGENT + DAGENT_BYTES_OUT);
	for (unsigned i = 0; i < d->nvirtio; i++)
		if (decode_virtio(p + DEV_LEN(i), i, &d->virtio[i], err) < 0)
			return -1;
	return snap_devices_check(d, mem_size, err);
}
