/* frame.c - one protobuf message per SOCK_SEQPACKET packet, with SCM_RIGHTS. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/ipc.h"

int ipc_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds,
	     bool nonblock)
{
	if (len > IPC_MAX_MSG)
		return -EMSGSIZE;
	if (nfds > IPC_MAX_FDS)
		return -EINVAL;

	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	int flags = MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0);
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, flags);
		if (n >= 0)
			return (size_t)n == len ? 0 : -EIO;
		if (errno != EINTR)
			return -errno;
	}
}

int ipc_send_pb(int sock, const ProtobufCMessage *msg, const int *fds,
		size_t nfds, bool nonblock)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	if (len > IPC_MAX_MSG)
		return -EMSGSIZE;
	/* Most messages are tiny; the stack buffer keeps the hot path free of
	 * malloc. */
	uint8_t small[1024];
	uint8_t *buf = len <= sizeof(small) ? small : malloc(len);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	int r = ipc_send(sock, buf, len, fds, nfds, nonblock);
	if (buf != small)
		free(buf);
	return r;
}

/* The number of fds in one SCM_RIGHTS cmsg. The kernel fills as many as
 * the control buffer has room for, and CMSG_SPACE rounds that room up, so
 * this can exceed what the buffer was sized for: never copy into a
 * fixed-size array, walk them. */
static size_t cmsg_nfds(const struct cmsghdr *c)
{
	return (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
}

static int cmsg_fd(const struct cmsghdr *c, size_t i)
{
	int fd;
	memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
	return fd;
}

static void close_cmsg_fds(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < cmsg_nfds(c); i++)
			close(cmsg_fd(c, i));
	}
}

int ipc_recv(int sock, struct ipc_msg *m, bool nonblock)
{
	m->len = 0;
	m->nfds = 0;
	struct iovec iov = { .iov_base = m->buf, .iov_len = IPC_MAX_MSG };
	/* One slot more than accepted, so that "too many" is seen as fds we
	 * got and close, rather than fds the kernel silently dropped. */
	union {
		/* Room for one fd more than accepted plus a SCM_CREDENTIALS
		 * block, so that a peer's SO_PASSCRED does not crowd out fds. */
		char b[CMSG_SPACE(sizeof(int) * (IPC_MAX_FDS + 1)) +
		       CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.b,
		.msg_controllen = sizeof(ctl.b),
	};
	int flags = MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0);
	ssize_t n;
	bool reset_seen = false;
	for (;;) {
		n = recvmsg(sock, &mh, flags);
		if (n >= 0)
			break;
		/* A unix socket whose peer closed with packets of ours still
		 * unread reports ECONNRESET once, ahead of whatever the peer
		 * sent us before it went (a child's ChildFailed, a VM's last
		 * GUEST_FAULT reply). The error is cleared by being reported:
		 * read on, and the caller gets those packets, then EOF. */
		if (errno == ECONNRESET && !reset_seen) {
			reset_seen = true;
			continue;
		}
		if (errno != EINTR)
			return -errno;
	}
	bool had_ctl = mh.msg_controllen > 0;
	if (mh.msg_flags & MSG_TRUNC) {
		if (had_ctl)
			close_cmsg_fds(&mh);
		return -EMSGSIZE;
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		if (had_ctl)
			close_cmsg_fds(&mh);
		return -ETOOMANYREFS;
	}
	size_t total = 0; /* over every SCM_RIGHTS cmsg the packet carried */
	for (struct cmsghdr *c = had_ctl ? CMSG_FIRSTHDR(&mh) : NULL; c;
	     c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < cmsg_nfds(c); i++, total++) {
			if (m->nfds < IPC_MAX_FDS)
				m->fds[m->nfds++] = cmsg_fd(c, i);
			else
				close(cmsg_fd(c, i));
		}
	}
	if (total > IPC_MAX_FDS) {
		ipc_msg_close_fds(m);
		return -ETOOMANYREFS;
	}
	/* A zero-length packet with no fds is how SOCK_SEQPACKET reports EOF;
	 * a zero-length packet that carried fds is a (bogus) message. */
	if (n == 0 && m->nfds == 0)
		return 0;
	m->len = (size_t)n;
	return 1;
}

int ipc_msg_expect_fds(struct ipc_msg *m, size_t want)
{
	if (m->nfds == want)
		return 0;
	ipc_msg_close_fds(m);
	return -EBADMSG;
}

int ipc_msg_take_fd(struct ipc_msg *m, size_t i)
{
	if (i >= m->nfds || m->fds[i] < 0)
		return -1;
	int fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

void ipc_msg_close_fds(struct ipc_msg *m)
{
	for (size_t i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

const char *ipc_strerror(int r)
{
	switch (r) {
	case 0:
		return "end of stream";
	case -EMSGSIZE:
		return "message larger than the protocol maximum (65536 bytes)";
	case -ETOOMANYREFS:
		return "too many file descriptors on one message";
	case -EBADMSG:
		return "wrong number of file descriptors for this message";
	default:
		return strerror(-r);
	}
}

ssize_t hatch_read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}
