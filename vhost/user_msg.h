/* user_msg.h - the vhost-user wire format (QEMU docs/interop/vhost-user.rst),
 * as the backend reads it.
 *
 * A message is a 12-byte header {u32 request, u32 flags, u32 size} and then
 * `size` bytes of payload, on a SOCK_STREAM unix socket; fds ride in
 * SCM_RIGHTS with the header's bytes. Little-endian, x86 only: fields are
 * read as they are.
 *
 * vhu_msg_decode() is pure: it turns one whole message (header and
 * payload, as bytes) into a struct vhu_msg and checks everything that can
 * be checked without state -- version, flags, that `size` is what the
 * request's payload needs (exact, or bounded for the variable ones), and
 * that the number of fds the message came with is what the request takes.
 * A request this backend does not implement is refused by name there, so
 * the message loop only sees requests it handles. It is fuzzed
 * (tests/fuzz/fuzz_vhost_msg.c).
 *
 * vhu_msg_recv()/vhu_msg_send() are the socket side. Ownership of fds: a
 * message returned by vhu_msg_recv() owns the fds in m->fds[0, m->nfds);
 * the caller takes them (steal, or vhu_msg_close_fds). On any error no fd
 * received is left open.
 */
#ifndef HATCHERY_VHOST_USER_MSG_H
#define HATCHERY_VHOST_USER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"

enum vhu_request {
	VHU_GET_FEATURES = 1,
	VHU_SET_FEATURES = 2,
	VHU_SET_OWNER = 3,
	VHU_RESET_OWNER = 4,
	VHU_SET_MEM_TABLE = 5,
	VHU_SET_LOG_BASE = 6,
	VHU_SET_LOG_FD = 7,
	VHU_SET_VRING_NUM = 8,
	VHU_SET_VRING_ADDR = 9,
	VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11,
	VHU_SET_VRING_KICK = 12,
	VHU_SET_VRING_CALL = 13,
	VHU_SET_VRING_ERR = 14,
	VHU_GET_PROTOCOL_FEATURES = 15,
	VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17,
	VHU_SET_VRING_ENABLE = 18,
	VHU_GET_CONFIG = 24,
	VHU_SET_CONFIG = 25,
	VHU_GET_MAX_MEM_SLOTS = 36,
	VHU_ADD_MEM_REG = 37,
	VHU_REM_MEM_REG = 38,
	VHU_REQUEST_MAX = 48, /* above every request number we know a name for */
};

/* Header flags: bits 0-1 the version (always 1), then REPLY (set on what
 * the backend sends back) and NEED_REPLY (REPLY_ACK: the frontend wants a
 * u64 status for a request that has no reply of its own). Every other bit
 * is reserved, and a message with one set is refused. */
#define VHU_VERSION 0x1u
#define VHU_VERSION_MASK 0x3u
#define VHU_FLAG_REPLY (1u << 2)
#define VHU_FLAG_NEED_REPLY (1u << 3)

/* Feature bits of the vhost-user layer itself. */
#define VHU_F_PROTOCOL_FEATURES 30 /* in GET/SET_FEATURES */
#define VHU_PROTOCOL_F_MQ 0
#define VHU_PROTOCOL_F_REPLY_ACK 3
#define VHU_PROTOCOL_F_CONFIG 9
#define VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

/* SET_VRING_KICK/CALL/ERR's u64: bits 0-7 the queue index, bit 8 "no fd
 * comes with this message". Every other bit is reserved. */
#define VHU_VRING_IDX_MASK 0xffu
#define VHU_VRING_NOFD (1u << 8)

#define VHU_HDR_SIZE 12u
#define VHU_MAX_MEM_REGIONS 8u  /* SET_MEM_TABLE's limit (and our slots) */
#define VHU_MAX_CONFIG_SIZE 256u
#define VHU_MAX_FDS VHU_MAX_MEM_REGIONS /* no request carries more */

struct vhu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
};

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};

/* Ring addresses are the frontend's virtual addresses (uva), not guest
 * physical ones: translate them with vhu_mem_uva_*. Note the order. */
struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags; /* bit 0: log the used ring (not supported) */
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
};

struct vhu_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset; /* where the region starts in its fd */
};

struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region regions[VHU_MAX_MEM_REGIONS];
};

struct vhu_mem_single {
	uint64_t padding;
	struct vhu_mem_region region;
};

struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[VHU_MAX_CONFIG_SIZE];
};
#define VHU_CONFIG_HDR_SIZE 12u

union vhu_payload {
	uint64_t u64;
	struct vhu_vring_state state;
	struct vhu_vring_addr addr;
	struct vhu_mem_table mem;
	struct vhu_mem_single single;
	struct vhu_config config;
};

/* The largest payload any request we accept has (SET_CONFIG with 256
 * bytes of config space); vhu_msg_recv refuses a header announcing more
 * before it reads the body. */
#define VHU_MAX_PAYLOAD (VHU_CONFIG_HDR_SIZE + VHU_MAX_CONFIG_SIZE)
#define VHU_MAX_MSG (VHU_HDR_SIZE + VHU_MAX_PAYLOAD)

struct vhu_msg {
	struct vhu_hdr hdr;
	union vhu_payload p; /* the first hdr.size bytes are the payload */
	int nfds;
	int fds[VHU_MAX_FDS];
};

/* "SET_MEM_TABLE"; "unknown" for a number we have no name for. */
const char *vhu_request_name(uint32_t request);

/* Decode one whole message: buf holds exactly the header and its payload
 * (len = 12 + size), and it arrived with nfds fds. Fills *out (its fds are
 * left to the caller: out->nfds = nfds, out->fds untouched). Returns 0, or
 * -1 with *err set (MALFORMED, MESSAGE_TOO_LARGE, UNEXPECTED_FDS or
 * INVALID_ARGUMENT for a request we do not implement). Never reads outside
 * [buf, buf + len). */
int vhu_msg_decode(const void *buf, size_t len, int nfds, struct vhu_msg *out,
		   struct hatch_err *err);

/* A reply to req: its request number, flags version|REPLY, and `size`
 * bytes of payload to be filled in by the caller (size <= VHU_MAX_PAYLOAD). */
void vhu_msg_reply_init(struct vhu_msg *reply, const struct vhu_msg *req,
			uint32_t size);

/* A reply carrying one u64 (GET_FEATURES, REPLY_ACK's status, ...). */
void vhu_msg_reply_u64(struct vhu_msg *reply, const struct vhu_msg *req,
		       uint64_t v);

/* Encode m (header and its hdr.size bytes of payload) into buf, which has
 * room for cap bytes. Returns the length, or 0 if it does not fit or
 * hdr.size is more than a payload can be. fds are not encoded. */
size_t vhu_msg_encode(const struct vhu_msg *m, void *buf, size_t cap);

/* Read one message from a stream socket. Returns 1 with *m filled (and
 * owning its fds), 0 on a clean end of stream before a header byte, or -1
 * with *err set: a short header or body (the peer went away mid-message),
 * more fds than any request takes or a truncated control message
 * (MSG_CTRUNC), a payload size over VHU_MAX_PAYLOAD (refused before the
 * body is read), or anything vhu_msg_decode refuses. Retries EINTR. */
int vhu_msg_recv(int sock, struct vhu_msg *m, struct hatch_err *err);

/* Write m (no fds). Returns 0 or -errno. Retries EINTR and short writes;
 * MSG_NOSIGNAL, so a gone peer is -EPIPE, not SIGPIPE. */
int vhu_msg_send(int sock, const struct vhu_msg *m);

/* Close m->fds[0, nfds) and set nfds to 0. */
void vhu_msg_close_fds(struct vhu_msg *m);

#endif
