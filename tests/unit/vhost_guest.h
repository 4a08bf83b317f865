/* vhost_guest.h - a test's stand-in for a vhost-user frontend's guest:
 * guest memory in a memfd (what the frontend passes with SET_MEM_TABLE)
 * and a split ring laid out in it as Linux's virtio_ring.c does, which the
 * test fills as the guest driver would. Plus what the tests' frontends
 * share: sending bytes with fds, counting open fds. */
#ifndef HATCHERY_TEST_VHOST_GUEST_H
#define HATCHERY_TEST_VHOST_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "user_msg.h"

#define VG_GPA 0x40000000ull      /* guest physical base of the region */
#define VG_UVA 0x7f0000000000ull  /* the frontend's virtual address of it */
#define VG_SIZE (1024u * 1024u)
#define VG_DESC 0x0u              /* ring areas, offsets into the region */
#define VG_AVAIL 0x4000u          /* room for a queue of 1024 */
#define VG_USED 0x5000u
#define VG_DATA 0x10000u          /* buffers from here on */

struct vg {
	int fd;         /* the memfd; the test owns it */
	uint8_t *host;  /* the test's own mapping of it */
	uint16_t num;
	uint16_t avail_idx;
};

void vg_init(struct vg *g, uint16_t num);
void vg_close(struct vg *g);
void *vg_ptr(const struct vg *g, uint64_t gpa);
struct vhu_mem_region vg_region(const struct vg *g);
struct vhu_vring_addr vg_addr(uint32_t index);
void vg_desc(struct vg *g, uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags,
	     uint16_t next);
void vg_publish(struct vg *g, uint16_t head);
uint16_t vg_used_idx(const struct vg *g);
void vg_used(const struct vg *g, uint16_t slot, uint32_t *id, uint32_t *len);
void vg_set_avail_flags(struct vg *g, uint16_t flags);

/* sendmsg of buf with nfds (<= 64) fds in one SCM_RIGHTS message. */
ssize_t vg_sendmsg(int sock, const void *buf, size_t len, const int *fds, int nfds);

/* How many fds below 1024 this process has open. */
int vg_open_fds(void);

#endif
