/* vhost_guest.c - see vhost_guest.h. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "vhost_guest.h"

void vg_init(struct vg *g, uint16_t num)
{
	g->fd = memfd_create("vhost-guest", MFD_CLOEXEC);
	cr_assert_geq(g->fd, 0);
	cr_assert_eq(ftruncate(g->fd, VG_SIZE), 0);
	g->host = mmap(NULL, VG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	cr_assert_neq(g->host, MAP_FAILED);
	g->num = num;
	g->avail_idx = 0;
}

void vg_close(struct vg *g)
{
	munmap(g->host, VG_SIZE);
	close(g->fd);
}

void *vg_ptr(const struct vg *g, uint64_t gpa)
{
	cr_assert(gpa >= VG_GPA && gpa - VG_GPA < VG_SIZE);
	return g->host + (gpa - VG_GPA);
}

struct vhu_mem_region vg_region(const struct vg *g)
{
	return (struct vhu_mem_region){ VG_GPA, VG_SIZE, VG_UVA, 0 };
}

struct vhu_vring_addr vg_addr(uint32_t index)
{
	return (struct vhu_vring_addr){ .index = index, .desc = VG_UVA + VG_DESC,
					.used = VG_UVA + VG_USED,
					.avail = VG_UVA + VG_AVAIL };
}

void vg_desc(struct vg *g, uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags,
	     uint16_t next)
{
	uint8_t *d = g->host + VG_DESC + 16u * i;
	memcpy(d, &gpa, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

void vg_publish(struct vg *g, uint16_t head)
{
	uint16_t *avail = (uint16_t *)(void *)(g->host + VG_AVAIL);
	avail[2 + (g->avail_idx & (g->num - 1))] = head;
	g->avail_idx++;
	__atomic_store_n(&avail[1], g->avail_idx, __ATOMIC_RELEASE);
}

void vg_set_avail_flags(struct vg *g, uint16_t flags)
{
	uint16_t *avail = (uint16_t *)(void *)(g->host + VG_AVAIL);
	__atomic_store_n(&avail[0], flags, __ATOMIC_RELEASE);
}

uint16_t vg_used_idx(const struct vg *g)
{
	const uint16_t *used = (const uint16_t *)(const void *)(g->host + VG_USED);
	return __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
}

void vg_used(const struct vg *g, uint16_t slot, uint32_t *id, uint32_t *len)
{
	const uint8_t *e = g->host + VG_USED + 4 + 8u * (slot & (g->num - 1));
	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
}

ssize_t vg_sendmsg(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char c[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} ctl;
	cr_assert_leq(nfds, 64);
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.c;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

int vg_open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}
