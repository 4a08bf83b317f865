/* vring.c - a vhost-user virtqueue on the backend side: see vring.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "vring.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

void vhu_vring_init(struct vhu_vring *vr, struct vhu_mem *mem)
{
	memset(vr, 0, sizeof(*vr));
	vr->kick_fd = vr->call_fd = vr->err_fd = -1;
	vr->mem = mem;
	vmp_vq_init(&vr->vq, VHU_VRING_MAX_SIZE, vhu_mem_xlate, mem, NULL, NULL);
}

void vhu_vring_close(struct vhu_vring *vr)
{
	hatch_closep(&vr->kick_fd);
	hatch_closep(&vr->call_fd);
	hatch_closep(&vr->err_fd);
	vhu_vring_init(vr, vr->mem);
}

static int refuse_started(const struct vhu_vring *vr, const char *what,
			  struct hatch_err *err)
{
	if (!vr->started)
		return 0;
	return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
			     "%s on a started ring", what);
}

int vhu_vring_set_num(struct vhu_vring *vr, uint32_t num, struct hatch_err *err)
{
	if (refuse_started(vr, "SET_VRING_NUM", err) < 0)
		return -1;
	if (num == 0 || num > VHU_VRING_MAX_SIZE || (num & (num - 1)) != 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "queue size %u (a power of 2 up to %u)", num,
				     VHU_VRING_MAX_SIZE);
	vr->num = (uint16_t)num;
	return 0;
}

int vhu_vring_set_addr(struct vhu_vring *vr, const struct vhu_vring_addr *a,
		       struct hatch_err *err)
{
	if (refuse_started(vr, "SET_VRING_ADDR", err) < 0)
		return -1;
	if (a->flags)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "vring address flags 0x%x (logging is not "
				     "supported)", a->flags);
	vr->addr = *a;
	vr->have_addr = true;
	return 0;
}

int vhu_vring_set_base(struct vhu_vring *vr, uint32_t base, struct hatch_err *err)
{
	if (refuse_started(vr, "SET_VRING_BASE", err) < 0)
		return -1;
	if (base > UINT16_MAX)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "vring base %u (a split ring's index is 16 bits)", base);
	vr->base = (uint16_t)base;
	return 0;
}

/* The fds are the frontend's eventfds, or whatever a hostile frontend
 * sends instead: a pipe that is full, an eventfd at its maximum count.
 * O_NONBLOCK, so no read or write of ours ever waits on one. (It is set
 * on the open file description, which the frontend shares; QEMU creates
 * its eventfds non-blocking anyway.) */
static void replace_fd(int *slot, int fd)
{
	hatch_closep(slot);
	if (fd >= 0) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	}
	*slot = fd;
}

void vhu_vring_set_kick(struct vhu_vring *vr, int fd)
{
	replace_fd(&vr->kick_fd, fd);
}

void vhu_vring_set_call(struct vhu_vring *vr, int fd)
{
	replace_fd(&vr->call_fd, fd);
}

void vhu_vring_set_err(struct vhu_vring *vr, int fd)
{
	replace_fd(&vr->err_fd, fd);
}

void vhu_vring_set_enable(struct vhu_vring *vr, bool on)
{
	vr->enabled = on;
}

/* The three areas' uvas -> gpas, each inside one region, sized as
 * virtqueue.c checks them (with used_event/avail_event). */
static int areas_to_gpa(struct vhu_vring *vr, struct hatch_err *err)
{
	uint64_t n = vr->num;
	if (vhu_mem_uva_to_gpa(vr->mem, vr->addr.desc, 16 * n, &vr->vq.desc_gpa) < 0 ||
	    vhu_mem_uva_to_gpa(vr->mem, vr->addr.avail, 6 + 2 * n, &vr->vq.avail_gpa) < 0 ||
	    vhu_mem_uva_to_gpa(vr->mem, vr->addr.used, 6 + 8 * n, &vr->vq.used_gpa) < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "ring %u's areas are not inside guest memory",
				     vr->addr.index);
	return 0;
}

/* (Re)enable the vmp_vq at the given indices. */
static int enable_at(struct vhu_vring *vr, uint16_t last_avail, uint16_t used_idx,
		     struct hatch_err *err)
{
	vmp_vq_reset(&vr->vq);
	vr->vq.num = vr->num;
	if (areas_to_gpa(vr, err) < 0)
		return -1;
	if (vmp_vq_resume(&vr->vq, last_avail, used_idx) < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "ring %u: %s",
				     vr->addr.index,
				     vr->vq.broken_why ? vr->vq.broken_why : "refused");
	return 0;
}

int vhu_vring_start(struct vhu_vring *vr, struct hatch_err *err)
{
	if (refuse_started(vr, "starting", err) < 0)
		return -1;
	if (!vr->num || !vr->have_addr || vr->kick_fd < 0)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "ring started without %s",
				     !vr->num ? "a size" : !vr->have_addr ? "addresses"
									  : "a kick fd");
	/* used->idx as the ring holds it: the frontend may hand over a ring
	 * another backend was serving (reconnect), whose used entries stay. */
	uint64_t used_gpa;
	const uint16_t *used_idx = NULL;
	if (vhu_mem_uva_to_gpa(vr->mem, vr->addr.used, 4, &used_gpa) == 0 &&
	    used_gpa % 4 == 0)
		used_idx = vhu_mem_translate(vr->mem, used_gpa + 2, 2);
	uint16_t used = used_idx ? __atomic_load_n(used_idx, __ATOMIC_ACQUIRE) : 0;
	if (enable_at(vr, vr->base, used, err) < 0)
		return -1;
	vr->started = true;
	return 0;
}

int vhu_vring_remap(struct vhu_vring *vr, struct hatch_err *err)
{
	if (!vr->started)
		return 0;
	uint16_t last_avail = vr->vq.last_avail;
	if (enable_at(vr, last_avail, vr->vq.used_idx, err) < 0) {
		vr->started = false;
		vr->base = last_avail; /* what GET_VRING_BASE will say */
		return -1;
	}
	return 0;
}

uint16_t vhu_vring_stop(struct vhu_vring *vr)
{
	uint16_t next = vr->started ? vr->vq.last_avail : vr->base;
	vmp_vq_disable(&vr->vq);
	vr->started = false;
	vr->base = next;
	return next;
}

bool vhu_vring_ready(const struct vhu_vring *vr)
{
	return vr->started && vr->enabled && vmp_vq_usable(&vr->vq);
}

static void signal_fd(int fd)
{
	uint64_t one = 1;
	if (fd >= 0)
		while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
}

int vhu_vring_pop(struct vhu_vring *vr, struct vmp_vq_elem *e)
{
	if (!vr->started || !vr->enabled)
		return 0;
	bool was_broken = vr->vq.broken;
	int r = vmp_vq_pop(&vr->vq, e);
	if (r == -EIO && !was_broken)
		signal_fd(vr->err_fd);
	return r;
}

int vhu_vring_push(struct vhu_vring *vr, uint16_t head, uint32_t written)
{
	return vmp_vq_push(&vr->vq, head, written);
}

void vhu_vring_notify(struct vhu_vring *vr)
{
	if (vmp_vq_needs_notify(&vr->vq))
		signal_fd(vr->call_fd);
}

void vhu_vring_kick_failed(struct vhu_vring *vr)
{
	if (vr->vq.broken)
		return;
	vmp_vq_set_broken(&vr->vq, "kick fd hung up or failed");
	signal_fd(vr->err_fd);
}

void vhu_vring_drain_kick(struct vhu_vring *vr)
{
	uint64_t v;
	if (vr->kick_fd >= 0)
		while (read(vr->kick_fd, &v, sizeof(v)) < 0 && errno == EINTR)
			;
}
