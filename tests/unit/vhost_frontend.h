/* vhost_frontend.h - the tests' vhost-user frontend and guest driver:
 * messages sent and replies read with Criterion asserts, the handshake
 * QEMU makes, a memory table and ring 0 over a struct vg, and virtio-blk
 * requests laid out in it. Shared by test_vhost_e2e (the program and the
 * backend in a thread) and test_vhost_jail (the jailed backend). */
#ifndef HATCHERY_TEST_VHOST_FRONTEND_H
#define HATCHERY_TEST_VHOST_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "user_msg.h"
#include "vhost_guest.h"

/* Page n of the guest's data area. */
#define GPA(n) (VG_GPA + VG_DATA + 0x1000u * (n))

void fe_send(int s, uint32_t req, uint32_t flags, const void *payload,
	     uint32_t size, const int *fds, int nfds);
void fe_u64(int s, uint32_t req, uint32_t flags, uint64_t v);
void fe_state(int s, uint32_t req, uint32_t index, uint32_t num);
/* A reply: header, then its payload into *p (up to cap). */
struct vhu_hdr fe_reply(int s, void *p, size_t cap);
uint64_t fe_reply_u64(int s, uint32_t req);
/* QEMU's handshake, in its order, with REPLY_ACK. */
void fe_handshake(int s);
void fe_mem_table(int s, const struct vg *g);
/* Ring 0 with num entries, its call and kick eventfds; enabled. */
void fe_ring(int s, uint16_t num, int call, int kick);
/* A three-descriptor request at descriptors d, d+1, d+2: header, data
 * (writable for IN and GET_ID), status; buffers at pages p, p+1, p+2. */
void blk_req(struct vg *g, uint16_t d, unsigned p, uint32_t type, uint64_t sector,
	     uint32_t len);
void kick(int fd);
/* Wait up to ms (scaled) for an eventfd to fire, and read it. */
bool wait_fd(int fd, int ms);

#endif
