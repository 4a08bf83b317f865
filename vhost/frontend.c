/* frontend.c - the VMM's side of vhost-user: see frontend.h.
 *
 * Requests are encoded with user_msg.c's encoder and sent in one sendmsg
 * (fds in SCM_RIGHTS with the header's bytes); replies are read here, not
 * with vhu_msg_recv, whose decoder checks requests (a reply's size is the
 * answer's, and it has the REPLY flag a request must not have). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_config.h>

#include "frontend.h"
#include "hatchery/clock.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* What this frontend speaks of the protocol features. */
static const uint64_t spoken_protocol =
	1ull << VHU_PROTOCOL_F_REPLY_ACK | 1ull << VHU_PROTOCOL_F_CONFIG;

bool vhu_front_has(const struct vhu_front *f, unsigned protocol_feature)
{
	return f->protocol_features & (1ull << protocol_feature);
}

static int broken(struct vhu_front *f, struct hatch_err *err, int code, int errnum,
		  const char *what, uint32_t req)
{
	f->broken = true;
	return hatch_err_set(err, code, errnum, "vhost-user %s: %s", vhu_request_name(req),
			     what);
}

static int send_msg(struct vhu_front *f, const struct vhu_msg *m, const int *fds,
		    int nfds, struct hatch_err *err)
{
	uint8_t buf[VHU_MAX_MSG];
	size_t len = vhu_msg_encode(m, buf, sizeof(buf));
	if (!len || nfds < 0 || nfds > (int)VHU_MAX_FDS)
		return broken(f, err, E(INTERNAL), 0, "message does not fit", m->hdr.request);
	union {
		char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	size_t done = 0;
	while (done < len) {
		struct iovec iov = { buf + done, len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (done == 0 && nfds > 0) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.b;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
		}
		ssize_t n = sendmsg(f->sock, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return broken(f, err, E(UNAVAILABLE), errno,
				      errno == EPIPE ? "the backend closed its connection"
						     : "sendmsg", m->hdr.request);
		done += (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes by the deadline. Any fd that comes along is
 * closed and counted (*fds_seen). Returns len, fewer at end of stream,
 * -ETIMEDOUT, or -errno. */
static ssize_t recv_exact(int sock, uint8_t *buf, size_t len, uint64_t deadline,
			  int *fds_seen)
{
	size_t got = 0;
	while (got < len) {
		uint64_t now = hatch_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue; /* the deadline check above ends it */
		union {
			char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { buf + got, len - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				close(fd);
				(*fds_seen)++;
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			(*fds_seen)++;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Read the reply to req: exactly `size` bytes of payload into *p. */
static int recv_reply(struct vhu_front *f, uint32_t req, union vhu_payload *p,
		      uint32_t size, struct hatch_err *err)
{
	uint64_t deadline = hatch_now_ns() + VHU_FRONT_TIMEOUT_MS * 1000000ull;
	int fds = 0;
	struct vhu_hdr h;
	ssize_t n = recv_exact(f->sock, (uint8_t *)&h, sizeof(h), deadline, &fds);
	if (n == -ETIMEDOUT)
		return broken(f, err, E(UNAVAILABLE), 0, "no reply from the backend within "
			      "10 s", req);
	if (n < 0)
		return broken(f, err, E(UNAVAILABLE), (int)-n, "recvmsg", req);
	if (n == 0)
		return broken(f, err, E(UNAVAILABLE), 0, "the backend closed its connection",
			      req);
	if ((size_t)n < sizeof(h))
		return broken(f, err, E(UNAVAILABLE), 0,
			      "the backend closed its connection inside a reply", req);
	if (h.request != req) {
		char what[96];
		snprintf(what, sizeof(what), "the reply is to request %u (%s)", h.request,
			 vhu_request_name(h.request));
		return broken(f, err, E(MALFORMED), 0, what, req);
	}
	if (h.flags != (VHU_VERSION | VHU_FLAG_REPLY)) {
		char what[64];
		snprintf(what, sizeof(what), "reply flags 0x%x (want 0x%x)", h.flags,
			 VHU_VERSION | VHU_FLAG_REPLY);
		return broken(f, err, E(MALFORMED), 0, what, req);
	}
	if (h.size != size) {
		/* Not read: the stream is out of step anyway. */
		char what[64];
		snprintf(what, sizeof(what), "a %u-byte reply (want %u)", h.size, size);
		return broken(f, err, E(MALFORMED), 0, what, req);
	}
	n = recv_exact(f->sock, (uint8_t *)p, size, deadline, &fds);
	if (n == -ETIMEDOUT)
		return broken(f, err, E(UNAVAILABLE), 0, "a reply's payload did not come "
			      "within 10 s", req);
	if (n < 0)
		return broken(f, err, E(UNAVAILABLE), (int)-n, "recvmsg", req);
	if ((size_t)n < size)
		return broken(f, err, E(UNAVAILABLE), 0,
			      "the backend closed its connection inside a reply", req);
	if (fds)
		return broken(f, err, E(UNEXPECTED_FDS), 0, "a reply with fds", req);
	return 0;
}

static void msg_init(struct vhu_msg *m, uint32_t req, uint32_t size)
{
	memset(m, 0, sizeof(*m));
	m->hdr = (struct vhu_hdr){ req, VHU_VERSION, size };
}

/* Send a request that has no reply of its own; with REPLY_ACK, ask for
 * its status and check it. */
static int request(struct vhu_front *f, struct vhu_msg *m, const int *fds, int nfds,
		   struct hatch_err *err)
{
	if (f->broken)
		return hatch_err_set(err, E(UNAVAILABLE), 0,
				     "vhost-user %s: the connection failed before",
				     vhu_request_name(m->hdr.request));
	bool ack = vhu_front_has(f, VHU_PROTOCOL_F_REPLY_ACK);
	if (ack)
		m->hdr.flags |= VHU_FLAG_NEED_REPLY;
	if (send_msg(f, m, fds, nfds, err) < 0)
		return -1;
	if (!ack)
		return 0;
	union vhu_payload p;
	if (recv_reply(f, m->hdr.request, &p, sizeof(uint64_t), err) < 0)
		return -1;
	if (p.u64 != 0) {
		char what[64];
		snprintf(what, sizeof(what), "the backend refused it (status %llu)",
			 (unsigned long long)p.u64);
		return broken(f, err, E(FAILED_PRECONDITION), 0, what, m->hdr.request);
	}
	return 0;
}

/* A request with a reply of its own, of `size` bytes. */
static int query(struct vhu_front *f, struct vhu_msg *m, union vhu_payload *out,
		 uint32_t size, struct hatch_err *err)
{
	if (f->broken)
		return hatch_err_set(err, E(UNAVAILABLE), 0,
				     "vhost-user %s: the connection failed before",
				     vhu_request_name(m->hdr.request));
	if (send_msg(f, m, NULL, 0, err) < 0)
		return -1;
	return recv_reply(f, m->hdr.request, out, size, err);
}

static int get_u64(struct vhu_front *f, uint32_t req, uint64_t *v, struct hatch_err *err)
{
	struct vhu_msg m;
	union vhu_payload p;
	msg_init(&m, req, 0);
	if (query(f, &m, &p, sizeof(uint64_t), err) < 0)
		return -1;
	*v = p.u64;
	return 0;
}

static int set_u64(struct vhu_front *f, uint32_t req, uint64_t v, struct hatch_err *err)
{
	struct vhu_msg m;
	msg_init(&m, req, sizeof(uint64_t));
	m.p.u64 = v;
	return request(f, &m, NULL, 0, err);
}

int vhu_front_open(struct vhu_front *f, int sock, struct hatch_err *err)
{
	*f = (struct vhu_front){ .sock = sock };
	if (get_u64(f, VHU_GET_FEATURES, &f->features, err) < 0)
		return -1;
	if (!(f->features & (1ull << VIRTIO_F_VERSION_1))) {
		f->broken = true;
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "vhost-user backend offers features 0x%llx, without "
				     "VIRTIO_F_VERSION_1 (legacy devices are not supported)",
				     (unsigned long long)f->features);
	}
	if (f->features & (1ull << VHU_F_PROTOCOL_FEATURES)) {
		uint64_t offered;
		if (get_u64(f, VHU_GET_PROTOCOL_FEATURES, &offered, err) < 0)
			return -1;
		/* Set before it is acked: REPLY_ACK applies from the next
		 * request on, and SET_PROTOCOL_FEATURES itself goes without. */
		uint64_t want = offered & spoken_protocol;
		if (set_u64(f, VHU_SET_PROTOCOL_FEATURES, want, err) < 0)
			return -1;
		f->protocol_features = want;
	}
	struct vhu_msg m;
	msg_init(&m, VHU_SET_OWNER, 0);
	return request(f, &m, NULL, 0, err);
}

int vhu_front_get_config(struct vhu_front *f, void *buf, uint32_t size,
			 struct hatch_err *err)
{
	if (!vhu_front_has(f, VHU_PROTOCOL_F_CONFIG))
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "vhost-user backend does not offer the CONFIG protocol "
				     "feature: no way to read the device's config space");
	if (size > VHU_MAX_CONFIG_SIZE)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "GET_CONFIG of %u bytes",
				     size);
	struct vhu_msg m;
	union vhu_payload p;
	msg_init(&m, VHU_GET_CONFIG, VHU_CONFIG_HDR_SIZE + size);
	m.p.config.offset = 0;
	m.p.config.size = size;
	if (query(f, &m, &p, VHU_CONFIG_HDR_SIZE + size, err) < 0)
		return -1;
	if (p.config.offset != 0 || p.config.size != size)
		return broken(f, err, E(MALFORMED), 0,
			      "the reply is for another part of the config space",
			      VHU_GET_CONFIG);
	memcpy(buf, p.config.payload, size);
	return 0;
}

int vhu_front_set_mem_table(struct vhu_front *f, const struct vhu_mem_region *r,
			    const int *fds, unsigned n, struct hatch_err *err)
{
	if (n == 0 || n > VHU_MAX_MEM_REGIONS)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "SET_MEM_TABLE with %u regions (1..%u)", n,
				     VHU_MAX_MEM_REGIONS);
	struct vhu_msg m;
	msg_init(&m, VHU_SET_MEM_TABLE, 8 + 32 * n);
	m.p.mem.nregions = n;
	memcpy(m.p.mem.regions, r, sizeof(*r) * n);
	return request(f, &m, fds, (int)n, err);
}

int vhu_front_set_features(struct vhu_front *f, uint64_t features, struct hatch_err *err)
{
	uint64_t proto = f->features & (1ull << VHU_F_PROTOCOL_FEATURES);
	if (features & ~f->features)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "SET_FEATURES: 0x%llx not offered by the backend",
				     (unsigned long long)(features & ~f->features));
	return set_u64(f, VHU_SET_FEATURES, features | proto, err);
}

static int set_state(struct vhu_front *f, uint32_t req, unsigned index, uint32_t num,
		     struct hatch_err *err)
{
	struct vhu_msg m;
	msg_init(&m, req, sizeof(struct vhu_vring_state));
	m.p.state = (struct vhu_vring_state){ index, num };
	return request(f, &m, NULL, 0, err);
}

/* KICK/CALL/ERR: the fd, or the "no fd" bit. */
static int set_vring_fd(struct vhu_front *f, uint32_t req, unsigned index, int fd,
			struct hatch_err *err)
{
	struct vhu_msg m;
	msg_init(&m, req, sizeof(uint64_t));
	m.p.u64 = index | (fd < 0 ? VHU_VRING_NOFD : 0);
	return request(f, &m, &fd, fd < 0 ? 0 : 1, err);
}

int vhu_front_start_ring(struct vhu_front *f, unsigned index,
			 const struct vhu_front_ring *r, struct hatch_err *err)
{
	if (index > VHU_VRING_IDX_MASK || r->kick_fd < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "ring %u: an index over 255 or no kick fd", index);
	struct vhu_msg m;
	msg_init(&m, VHU_SET_VRING_ADDR, sizeof(struct vhu_vring_addr));
	m.p.addr = (struct vhu_vring_addr){ .index = index, .desc = r->desc,
					    .used = r->used, .avail = r->avail };
	/* The kick comes last: it starts the ring in the backend, which
	 * then must know everything else. */
	if (set_state(f, VHU_SET_VRING_NUM, index, r->num, err) < 0 ||
	    set_state(f, VHU_SET_VRING_BASE, index, r->base, err) < 0 ||
	    request(f, &m, NULL, 0, err) < 0 ||
	    set_vring_fd(f, VHU_SET_VRING_CALL, index, r->call_fd, err) < 0 ||
	    set_vring_fd(f, VHU_SET_VRING_ERR, index, r->err_fd, err) < 0 ||
	    set_vring_fd(f, VHU_SET_VRING_KICK, index, r->kick_fd, err) < 0)
		return -1;
	/* With protocol features negotiated a ring starts disabled. */
	if (f->features & (1ull << VHU_F_PROTOCOL_FEATURES))
		return set_state(f, VHU_SET_VRING_ENABLE, index, 1, err);
	return 0;
}

int vhu_front_stop_ring(struct vhu_front *f, unsigned index, uint16_t *base,
			struct hatch_err *err)
{
	if ((f->features & (1ull << VHU_F_PROTOCOL_FEATURES)) &&
	    set_state(f, VHU_SET_VRING_ENABLE, index, 0, err) < 0)
		return -1;
	struct vhu_msg m;
	union vhu_payload p;
	msg_init(&m, VHU_GET_VRING_BASE, sizeof(struct vhu_vring_state));
	m.p.state = (struct vhu_vring_state){ index, 0 };
	if (query(f, &m, &p, sizeof(struct vhu_vring_state), err) < 0)
		return -1;
	if (p.state.index != index || p.state.num > 0xffff)
		return broken(f, err, E(MALFORMED), 0, "the reply names another ring or an "
			      "index over 65535", VHU_GET_VRING_BASE);
	*base = (uint16_t)p.state.num;
	return 0;
}
