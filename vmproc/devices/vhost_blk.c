/* vhost_blk.c - virtio-blk with its queue in a vhost-user backend: see
 * vhost_blk.h. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

#include "devices/vhost_blk.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define BLK_QUEUE 0u
/* Device-specific feature bits are 0..23 (virtio 1.1 §6); above are the
 * transport's and the ring's, of which the transport adds VERSION_1. */
/* The backend's device bits, but for those whose config fields lie past
 * CONFIG_READ: secure erase (16) and zoned (17), which nothing here serves. */
#define DEVICE_FEATURE_MASK                                                     \
	(((1ull << VIRTIO_TRANSPORT_F_START) - 1) & ~(1ull << 16) & ~(1ull << 17))
/* The config space read from the backend: up to the secure-erase fields
 * (virtio 1.1's virtio_blk_config, 60 bytes); the rest of b->config stays
 * zero. What QEMU 7.2 asks for, and the most qemu-storage-daemon 7.2
 * answers: a GET_CONFIG larger than its own struct gets an empty reply. */
#define CONFIG_READ offsetof(struct virtio_blk_config, max_secure_erase_sectors)

/* The device cannot go on: tell the driver (NEEDS_RESET, a config
 * interrupt) and keep the reason for the machine, which ends the VM. */
static void die_code(struct vmp_vhost_blk *b, int code, const char *why)
{
	if (b->dead)
		return;
	b->dead = true;
	b->code = code;
	snprintf(b->why, sizeof(b->why), "disk: %s", why);
	vmp_virtio_mmio_needs_reset(&b->mmio, b->why);
}

static void die(struct vmp_vhost_blk *b, const char *why)
{
	die_code(b, HATCHERY__V1__ERROR_CODE__VM_ERROR, why);
}

static uint32_t config_read(void *dev, uint32_t offset, unsigned size)
{
	struct vmp_vhost_blk *b = dev;
	uint32_t v = 0;
	if (offset < sizeof(b->config) && size <= sizeof(b->config) - offset)
		memcpy(&v, b->config + offset, size);
	return v;
}

/* DRIVER_OK with the queue ready: the backend takes the ring. The areas
 * were checked inside guest RAM at QueueReady (vmp_vq_enable); their host
 * pointers are what the backend knows as our addresses (SET_MEM_TABLE's
 * uva is our mapping). */
static void start(struct vmp_vhost_blk *b)
{
	struct vmp_vq *vq = vmp_virtio_mmio_queue(&b->mmio, BLK_QUEUE);
	struct vhu_front_ring r = {
		.num = vq->num,
		.base = 0, /* a fresh ring: the driver starts at index 0 */
		.desc = (uint64_t)(uintptr_t)vq->desc,
		.avail = (uint64_t)(uintptr_t)vq->avail,
		.used = (uint64_t)(uintptr_t)vq->used,
		.kick_fd = b->kick_fd,
		.call_fd = b->call_fd,
		.err_fd = b->err_fd,
	};
	struct hatch_err err = { 0 };
	uint64_t features = vmp_virtio_mmio_driver_features(&b->mmio);
	if (vhu_front_set_features(&b->fe, features, &err) < 0 ||
	    vhu_front_start_ring(&b->fe, BLK_QUEUE, &r, &err) < 0) {
		die(b, err.msg);
		return;
	}
	b->started = true;
}

static void queue_notify(void *dev, unsigned q)
{
	struct vmp_vhost_blk *b = dev;
	if (b->dead || q != BLK_QUEUE)
		return;
	if (!b->started) {
		start(b);
		return;
	}
	/* A notify that reached the register handler, not the ioeventfd
	 * (which datamatches queue 0 only: this is a second write racing
	 * nothing, or a test): pass it on. */
	uint64_t one = 1;
	while (write(b->kick_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void reset(void *dev)
{
	struct vmp_vhost_blk *b = dev;
	if (!b->started || b->dead)
		return;
	b->started = false;
	uint16_t base;
	struct hatch_err err = { 0 };
	if (vhu_front_stop_ring(&b->fe, BLK_QUEUE, &base, &err) < 0)
		die(b, err.msg);
}

int vmp_vhost_blk_init(struct vmp_vhost_blk *b, const struct vmp_vhost_blk_params *p,
		       struct hatch_err *err)
{
	memset(b, 0, sizeof(*b));
	b->kick_fd = p->kick_fd;
	b->call_fd = p->call_fd;
	b->err_fd = -1;
	int *fds = (int[VHU_MAX_MEM_REGIONS]){ 0 };
	if (p->nregions == 0 || p->nregions > VHU_MAX_MEM_REGIONS)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
				     "disk: %u memory regions", p->nregions);
	b->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->err_fd < 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, errno,
				     "disk: eventfd (the ring's err fd)");
	for (unsigned i = 0; i < p->nregions; i++)
		fds[i] = p->mem_fd;
	if (vhu_front_open(&b->fe, p->sock, err) < 0 ||
	    vhu_front_get_config(&b->fe, b->config, CONFIG_READ, err) < 0 ||
	    vhu_front_set_mem_table(&b->fe, p->regions, fds, p->nregions, err) < 0) {
		hatch_closep(&b->err_fd);
		return hatch_err_wrap(err, "disk");
	}
	b->ops = (struct vmp_virtio_dev_ops){
		.device_id = VIRTIO_ID_BLOCK,
		.features = b->fe.features & DEVICE_FEATURE_MASK,
		.nqueues = 1,
		.queue_max = VMP_VHOST_BLK_QUEUE_MAX,
		.config_read = config_read,
		.queue_notify = queue_notify,
		.reset = reset,
		.vring_irq_elsewhere = true,
	};
	if (vmp_virtio_mmio_init(&b->mmio, &b->ops, b, p->xlate, p->xlate_opaque,
				 p->raise_irq, p->irq_opaque) < 0) {
		hatch_closep(&b->err_fd);
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, EINVAL,
				     "disk: virtio-mmio init");
	}
	return 0;
}

int vmp_vhost_blk_pollfd(const struct vmp_vhost_blk *b)
{
	return b->dead ? -1 : b->fe.sock;
}

int vmp_vhost_blk_conn_event(struct vmp_vhost_blk *b)
{
	if (b->dead)
		return -1;
	char c;
	struct iovec iov = { &c, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n = recvmsg(b->fe.sock, &mh, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n > 0)
		die(b, "the disk backend sent a message nobody asked for");
	else if (n == 0 || errno == ECONNRESET)
		die(b, "the disk backend closed its connection");
	else {
		char why[128];
		snprintf(why, sizeof(why), "the disk backend's connection: %s", strerror(errno));
		die(b, why);
	}
	b->fe.broken = true;
	return -1;
}

int vmp_vhost_blk_err_fd(const struct vmp_vhost_blk *b)
{
	return b->dead ? -1 : b->err_fd;
}

int vmp_vhost_blk_err_event(struct vmp_vhost_blk *b)
{
	uint64_t n = 0;
	if (b->dead)
		return -1;
	if (read(b->err_fd, &n, sizeof(n)) != (ssize_t)sizeof(n) || n == 0)
		return 0;
	die_code(b, HATCHERY__V1__ERROR_CODE__GUEST_FAULT,
		 "the disk backend stopped the ring: the guest broke it (an index or a "
		 "buffer out of range)");
	return -1;
}

const char *vmp_vhost_blk_failed(const struct vmp_vhost_blk *b, int *code)
{
	if (code)
		*code = b->dead ? b->code : 0;
	return b->dead ? b->why : NULL;
}
