/* user_msg.c - decoding and encoding vhost-user messages: see user_msg.h.
 * Pure: no syscalls here (the socket side is user_msg_io.c). */
#include <string.h>

#include "hatchery/v1/common.pb-c.h"
#include "user_msg.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

_Static_assert(sizeof(struct vhu_hdr) == VHU_HDR_SIZE, "header layout");
_Static_assert(sizeof(struct vhu_vring_state) == 8, "vring state layout");
_Static_assert(sizeof(struct vhu_vring_addr) == 40, "vring addr layout");
_Static_assert(sizeof(struct vhu_mem_region) == 32, "region layout");
_Static_assert(sizeof(struct vhu_mem_table) == 8 + 32 * VHU_MAX_MEM_REGIONS,
	       "memory table layout");
_Static_assert(sizeof(struct vhu_mem_single) == 40, "single region layout");
_Static_assert(sizeof(struct vhu_config) == VHU_MAX_PAYLOAD, "config layout");

/* How a request's payload size is checked. */
enum size_rule {
	SZ_EXACT,     /* size == rule.size */
	SZ_MEM_TABLE, /* 8 + 32 * nregions, 1 <= nregions <= 8 */
	SZ_CONFIG,    /* 12 + config.size, config.size <= 256 */
};

/* How many fds a request comes with. */
enum fd_rule {
	FD_NONE,
	FD_ONE,
	FD_PER_REGION, /* SET_MEM_TABLE: one per region */
	FD_VRING,      /* KICK/CALL/ERR: one, none if the u64 has VHU_VRING_NOFD */
	FD_AT_MOST_ONE, /* REM_MEM_REG: none; QEMU sends one (the spec allows it) */
};

struct rule {
	const char *name;
	bool handled; /* false: named for the error message, then refused */
	enum size_rule size_rule;
	uint32_t size;
	enum fd_rule fd_rule;
};

#define R(req, sz_rule, sz, fds) [VHU_##req] = { #req, true, sz_rule, sz, fds }
#define UNHANDLED(req, num) [num] = { #req, false, SZ_EXACT, 0, FD_NONE }

static const struct rule rules[VHU_REQUEST_MAX] = {
	R(GET_FEATURES, SZ_EXACT, 0, FD_NONE),
	R(SET_FEATURES, SZ_EXACT, 8, FD_NONE),
	R(SET_OWNER, SZ_EXACT, 0, FD_NONE),
	R(RESET_OWNER, SZ_EXACT, 0, FD_NONE),
	R(SET_MEM_TABLE, SZ_MEM_TABLE, 0, FD_PER_REGION),
	UNHANDLED(SET_LOG_BASE, 6),
	UNHANDLED(SET_LOG_FD, 7),
	R(SET_VRING_NUM, SZ_EXACT, 8, FD_NONE),
	R(SET_VRING_ADDR, SZ_EXACT, 40, FD_NONE),
	R(SET_VRING_BASE, SZ_EXACT, 8, FD_NONE),
	R(GET_VRING_BASE, SZ_EXACT, 8, FD_NONE),
	R(SET_VRING_KICK, SZ_EXACT, 8, FD_VRING),
	R(SET_VRING_CALL, SZ_EXACT, 8, FD_VRING),
	R(SET_VRING_ERR, SZ_EXACT, 8, FD_VRING),
	R(GET_PROTOCOL_FEATURES, SZ_EXACT, 0, FD_NONE),
	R(SET_PROTOCOL_FEATURES, SZ_EXACT, 8, FD_NONE),
	R(GET_QUEUE_NUM, SZ_EXACT, 0, FD_NONE),
	R(SET_VRING_ENABLE, SZ_EXACT, 8, FD_NONE),
	UNHANDLED(SEND_RARP, 19),
	UNHANDLED(NET_SET_MTU, 20),
	UNHANDLED(SET_BACKEND_REQ_FD, 21),
	UNHANDLED(IOTLB_MSG, 22),
	UNHANDLED(SET_VRING_ENDIAN, 23),
	R(GET_CONFIG, SZ_CONFIG, 0, FD_NONE),
	R(SET_CONFIG, SZ_CONFIG, 0, FD_NONE),
	UNHANDLED(CREATE_CRYPTO_SESSION, 26),
	UNHANDLED(CLOSE_CRYPTO_SESSION, 27),
	UNHANDLED(POSTCOPY_ADVISE, 28),
	UNHANDLED(POSTCOPY_LISTEN, 29),
	UNHANDLED(POSTCOPY_END, 30),
	UNHANDLED(GET_INFLIGHT_FD, 31),
	UNHANDLED(SET_INFLIGHT_FD, 32),
	UNHANDLED(GPU_SET_SOCKET, 33),
	UNHANDLED(RESET_DEVICE, 34),
	UNHANDLED(VRING_KICK, 35),
	R(GET_MAX_MEM_SLOTS, SZ_EXACT, 0, FD_NONE),
	R(ADD_MEM_REG, SZ_EXACT, 40, FD_ONE),
	R(REM_MEM_REG, SZ_EXACT, 40, FD_AT_MOST_ONE),
	UNHANDLED(SET_STATUS, 39),
	UNHANDLED(GET_STATUS, 40),
};

const char *vhu_request_name(uint32_t request)
{
	if (request >= VHU_REQUEST_MAX || !rules[request].name)
		return "unknown";
	return rules[request].name;
}

static int check_flags(uint32_t flags, struct hatch_err *err)
{
	if ((flags & VHU_VERSION_MASK) != VHU_VERSION)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "vhost-user version %u (only 1 is spoken)",
				     flags & VHU_VERSION_MASK);
	if (flags & VHU_FLAG_REPLY)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "a reply where a request was expected");
	if (flags & ~(VHU_VERSION_MASK | VHU_FLAG_NEED_REPLY))
		return hatch_err_set(err, E(MALFORMED), 0,
				     "reserved header flags 0x%x set", flags);
	return 0;
}

/* The payload size the request must have, given its first bytes (already
 * known to be in the buffer when the rule reads them); UINT32_MAX when
 * the payload is too short to say. */
static uint32_t want_size(const struct rule *r, const uint8_t *payload,
			  uint32_t size, struct hatch_err *err)
{
	uint32_t n;
	switch (r->size_rule) {
	case SZ_EXACT:
		return r->size;
	case SZ_MEM_TABLE:
		if (size < 8)
			return UINT32_MAX;
		memcpy(&n, payload, sizeof(n));
		if (n == 0 || n > VHU_MAX_MEM_REGIONS) {
			hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				      "SET_MEM_TABLE with %u regions (1..%u)", n,
				      VHU_MAX_MEM_REGIONS);
			return UINT32_MAX - 1;
		}
		return 8 + 32 * n;
	case SZ_CONFIG:
		if (size < VHU_CONFIG_HDR_SIZE)
			return UINT32_MAX;
		memcpy(&n, payload + 4, sizeof(n));
		if (n > VHU_MAX_CONFIG_SIZE) {
			hatch_err_set(err, E(MESSAGE_TOO_LARGE), 0,
				      "config space of %u bytes (at most %u)", n,
				      VHU_MAX_CONFIG_SIZE);
			return UINT32_MAX - 1;
		}
		return VHU_CONFIG_HDR_SIZE + n;
	}
	return UINT32_MAX;
}

static int want_fds(const struct rule *r, const union vhu_payload *p, int *lo,
		    int *hi)
{
	*lo = *hi = 0;
	switch (r->fd_rule) {
	case FD_NONE:
		break;
	case FD_ONE:
		*lo = *hi = 1;
		break;
	case FD_PER_REGION:
		*lo = *hi = (int)p->mem.nregions;
		break;
	case FD_VRING:
		if (p->u64 & ~(uint64_t)(VHU_VRING_IDX_MASK | VHU_VRING_NOFD))
			return -1;
		*lo = *hi = (p->u64 & VHU_VRING_NOFD) ? 0 : 1;
		break;
	case FD_AT_MOST_ONE:
		*hi = 1;
		break;
	}
	return 0;
}

static int check_payload(const struct rule *r, const struct vhu_msg *m,
			 const uint8_t *payload, struct hatch_err *err)
{
	uint32_t size = m->hdr.size;
	hatch_err_clear(err);
	uint32_t want = want_size(r, payload, size, err);
	if (want == UINT32_MAX - 1)
		return hatch_err_wrap(err, "%s", r->name);
	if (want == UINT32_MAX)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "%s with a %u-byte payload (too short)", r->name, size);
	if (want != size)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "%s with a %u-byte payload (wants %u)", r->name,
				     size, want);
	return 0;
}

static int check_fds(const struct rule *r, const struct vhu_msg *m, int nfds,
		     struct hatch_err *err)
{
	int lo, hi;
	if (want_fds(r, &m->p, &lo, &hi) < 0)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "%s: reserved bits set in 0x%llx", r->name,
				     (unsigned long long)m->p.u64);
	if (nfds < lo || nfds > hi)
		return hatch_err_set(err, E(UNEXPECTED_FDS), 0,
				     "%s with %d fds (wants %d%s)", r->name, nfds, lo,
				     hi > lo ? " or 1" : "");
	return 0;
}

int vhu_msg_decode(const void *buf, size_t len, int nfds, struct vhu_msg *out,
		   struct hatch_err *err)
{
	const uint8_t *b = buf;
	if (len < VHU_HDR_SIZE)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "vhost-user message of %zu bytes (header is %u)",
				     len, VHU_HDR_SIZE);
	memset(out, 0, offsetof(struct vhu_msg, fds));
	memcpy(&out->hdr, b, VHU_HDR_SIZE);
	if (out->hdr.size > VHU_MAX_PAYLOAD)
		return hatch_err_set(err, E(MESSAGE_TOO_LARGE), 0,
				     "%s with a %u-byte payload (at most %u)",
				     vhu_request_name(out->hdr.request),
				     out->hdr.size, VHU_MAX_PAYLOAD);
	if (len - VHU_HDR_SIZE != out->hdr.size)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "header says %u payload bytes, %zu came",
				     out->hdr.size, len - VHU_HDR_SIZE);
	if (check_flags(out->hdr.flags, err) < 0)
		return -1;
	uint32_t req = out->hdr.request;
	if (req >= VHU_REQUEST_MAX || !rules[req].handled)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "vhost-user request %u (%s) not supported", req,
				     vhu_request_name(req));
	const struct rule *r = &rules[req];
	if (nfds < 0 || nfds > (int)VHU_MAX_FDS)
		return hatch_err_set(err, E(UNEXPECTED_FDS), 0, "%s with %d fds",
				     r->name, nfds);
	if (check_payload(r, out, b + VHU_HDR_SIZE, err) < 0)
		return -1;
	memcpy(&out->p, b + VHU_HDR_SIZE, out->hdr.size);
	if (check_fds(r, out, nfds, err) < 0)
		return -1;
	out->nfds = nfds;
	return 0;
}

void vhu_msg_reply_init(struct vhu_msg *reply, const struct vhu_msg *req,
			uint32_t size)
{
	memset(reply, 0, sizeof(*reply));
	reply->hdr.request = req->hdr.request;
	reply->hdr.flags = VHU_VERSION | VHU_FLAG_REPLY;
	reply->hdr.size = size;
}

void vhu_msg_reply_u64(struct vhu_msg *reply, const struct vhu_msg *req,
		       uint64_t v)
{
	vhu_msg_reply_init(reply, req, sizeof(uint64_t));
	reply->p.u64 = v;
}

size_t vhu_msg_encode(const struct vhu_msg *m, void *buf, size_t cap)
{
	if (m->hdr.size > VHU_MAX_PAYLOAD || cap < VHU_HDR_SIZE + (size_t)m->hdr.size)
		return 0;
	memcpy(buf, &m->hdr, VHU_HDR_SIZE);
	memcpy((uint8_t *)buf + VHU_HDR_SIZE, &m->p, m->hdr.size);
	return VHU_HDR_SIZE + (size_t)m->hdr.size;
}
