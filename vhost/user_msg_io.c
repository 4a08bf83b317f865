/* user_msg_io.c - vhost-user messages on a stream socket: see user_msg.h.
 *
 * The header is read with recvmsg (the fds ride with its first byte), its
 * size checked, then the body read exactly. Any fds that come with the
 * body's bytes are dropped by the kernel (read() passes no control
 * buffer), so only the header's are ever installed.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/common.pb-c.h"
#include "user_msg.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

void vhu_msg_close_fds(struct vhu_msg *m)
{
	for (int i = 0; i < m->nfds; i++)
		hatch_closep(&m->fds[i]);
	m->nfds = 0;
}

/* Take the fds of every SCM_RIGHTS cmsg into m->fds; more than
 * VHU_MAX_FDS (possible: CMSG_SPACE rounds the buffer up) are closed and
 * counted, so the caller refuses the message. */
static int take_fds(struct msghdr *mh, struct vhu_msg *m)
{
	int total = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++, total++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (m->nfds < (int)VHU_MAX_FDS)
				m->fds[m->nfds++] = fd;
			else
				close(fd);
		}
	}
	return total;
}

/* recvmsg into buf[0, len) until it is full; fds only from the first
 * call. Returns bytes read (< len only at end of stream) or -errno. */
static ssize_t recv_header(int sock, void *buf, size_t len, struct vhu_msg *m,
			   int *total_fds, bool *ctrunc)
{
	size_t got = 0;
	while (got < len) {
		union {
			char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { (uint8_t *)buf + got, len - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		*total_fds += take_fds(&mh, m);
		*ctrunc |= (mh.msg_flags & MSG_CTRUNC) != 0;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int recv_raw(int sock, uint8_t *buf, struct vhu_msg *m, size_t *len,
		    struct hatch_err *err)
{
	int total_fds = 0;
	bool ctrunc = false;
	ssize_t n = recv_header(sock, buf, VHU_HDR_SIZE, m, &total_fds, &ctrunc);
	if (n < 0)
		return hatch_err_set(err, E(INTERNAL), (int)-n, "vhost-user recvmsg");
	if (n == 0 && total_fds == 0)
		return 0;
	if ((size_t)n < VHU_HDR_SIZE)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "vhost-user connection closed inside a header");
	if (ctrunc || total_fds > (int)VHU_MAX_FDS)
		return hatch_err_set(err, E(UNEXPECTED_FDS), 0,
				     "vhost-user message with more than %u fds",
				     VHU_MAX_FDS);
	uint32_t size;
	memcpy(&size, buf + 8, sizeof(size));
	if (size > VHU_MAX_PAYLOAD)
		return hatch_err_set(err, E(MESSAGE_TOO_LARGE), 0,
				     "vhost-user payload of %u bytes (at most %u)",
				     size, VHU_MAX_PAYLOAD);
	n = hatch_read_full(sock, buf + VHU_HDR_SIZE, size);
	if (n < 0)
		return hatch_err_set(err, E(INTERNAL), (int)-n, "vhost-user read");
	if ((size_t)n < size)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "vhost-user connection closed inside a payload");
	*len = VHU_HDR_SIZE + size;
	return 1;
}

int vhu_msg_recv(int sock, struct vhu_msg *m, struct hatch_err *err)
{
	uint8_t buf[VHU_MAX_MSG];
	size_t len = 0;
	m->nfds = 0;
	int r = recv_raw(sock, buf, m, &len, err);
	if (r <= 0) {
		vhu_msg_close_fds(m);
		return r;
	}
	int nfds = m->nfds;
	if (vhu_msg_decode(buf, len, nfds, m, err) < 0) {
		m->nfds = nfds;
		vhu_msg_close_fds(m);
		return -1;
	}
	return 1;
}

int vhu_msg_send(int sock, const struct vhu_msg *m)
{
	uint8_t buf[VHU_MAX_MSG];
	size_t len = vhu_msg_encode(m, buf, sizeof(buf));
	if (!len)
		return -EMSGSIZE;
	size_t done = 0;
	while (done < len) {
		ssize_t n = send(sock, buf + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}
