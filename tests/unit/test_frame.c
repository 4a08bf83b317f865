/* test_frame.c - packet framing and fd passing (ipc/); the error messages
 * are test_error.c.
 *
 * Each test makes its own SOCK_SEQPACKET pair. The fd-leak checks count
 * /proc/self/fd before and after: a received fd that nobody closed shows up
 * there whatever its number.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchery/cleanup.h"
#include "hatchery/error.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/supervisor.pb-c.h"

#define RAW_MAX_FDS 16 /* most fds the tests send with raw_send() */

/* A regression that makes a nonblocking call block fails the test instead
 * of hanging the run. */
TestSuite(frame, .timeout = 10);

/* ---- helpers --------------------------------------------------------- */

static void seqpair(int sv[2])
{
	int r = socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
	cr_assert_eq(r, 0, "socketpair: %s", strerror(errno));
}

static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	cr_assert_not_null(d, "opendir /proc/self/fd: %s", strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d); /* its own fd is counted every time, so it cancels out */
	return n;
}

/* A file to pass around. Deliberately not close-on-exec, so that a received
 * copy having FD_CLOEXEC can only come from the receiving side. */
static int new_file(const char *tag)
{
	int fd = memfd_create(tag, 0);
	cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
	return fd;
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;
	cr_assert_eq(fstat(a, &sa), 0, "fstat %d: %s", a, strerror(errno));
	cr_assert_eq(fstat(b, &sb), 0, "fstat %d: %s", b, strerror(errno));
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void assert_received_fd(int got, int orig)
{
	int fl = fcntl(got, F_GETFD);
	cr_assert_geq(fl, 0, "received fd %d is not open: %s", got, strerror(errno));
	cr_assert(fl & FD_CLOEXEC, "received fd %d lacks FD_CLOEXEC", got);
	cr_assert_neq(got, orig, "received fd is the sender's own number");
	cr_assert(same_file(got, orig), "received fd %d is not the file sent", got);
}

/* sendmsg() without ipc_send()'s checks: any size, any number of fds. */
static void raw_send(int sock, const void *buf, size_t len, const int *fds,
		     size_t nfds)
{
	cr_assert_leq(nfds, RAW_MAX_FDS);
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int) * RAW_MAX_FDS)];
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
	ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	cr_assert_eq(n, (ssize_t)len, "raw sendmsg of %zu bytes, %zu fds: %s",
		     len, nfds, n < 0 ? strerror(errno) : "short");
}

/* Exactly IPC_MAX_MSG bytes, as the API asks; ASan puts a redzone after a
 * global too, so a write past it is caught. Static rather than heap so that
 * a failed assertion does not add a leak report to its message. */
static uint8_t rx_buf[IPC_MAX_MSG];

static void msg_init(struct ipc_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->buf = rx_buf;
}

static void msg_fini(struct ipc_msg *m)
{
	ipc_msg_close_fds(m);
	m->buf = NULL;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31u + seed);
}

/* Send n fds (distinct files) with ipc_send, receive, check each one. */
static void roundtrip_fds(size_t n)
{
	int sv[2];
	seqpair(sv);
	int src[IPC_MAX_FDS];
	for (size_t i = 0; i < n; i++)
		src[i] = new_file("rt");
	int base = count_open_fds();

	static const char payload[] = "hello, hatchery";
	cr_assert_eq(ipc_send(sv[0], payload, sizeof(payload), src, n, false), 0);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(m.len, sizeof(payload));
	cr_assert_arr_eq(m.buf, payload, sizeof(payload));
	cr_assert_eq(m.nfds, n, "got %zu fds, sent %zu", m.nfds, n);
	cr_assert_eq(count_open_fds(), base + (int)n);
	for (size_t i = 0; i < n; i++) {
		assert_received_fd(m.fds[i], src[i]);
		for (size_t j = 0; j < n; j++)
			if (j != i)
				cr_assert_not(same_file(m.fds[i], src[j]),
					      "fd %zu arrived out of order", i);
	}
	cr_assert_eq(ipc_msg_expect_fds(&m, n), 0);
	cr_assert_eq(m.nfds, n, "expect_fds with the right count closed fds");
	msg_fini(&m);
	cr_assert_eq(count_open_fds(), base, "ipc_msg_close_fds leaked");
	for (size_t i = 0; i < n; i++)
		close(src[i]);
	close(sv[0]);
	close(sv[1]);
}

/* ---- round trips ----------------------------------------------------- */

Test(frame, roundtrip_no_fds)
{
	roundtrip_fds(0);
}

Test(frame, roundtrip_one_fd)
{
	roundtrip_fds(1);
}

Test(frame, roundtrip_max_fds)
{
	roundtrip_fds(IPC_MAX_FDS);
}

Test(frame, take_fd_transfers_ownership)
{
	int sv[2];
	seqpair(sv);
	int src[2] = { new_file("a"), new_file("b") };
	cr_assert_eq(ipc_send(sv[0], "x", 1, src, 2, false), 0);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(m.nfds, 2);

	int fd = ipc_msg_take_fd(&m, 1);
	cr_assert_geq(fd, 0);
	cr_assert(same_file(fd, src[1]));
	cr_assert_eq(ipc_msg_take_fd(&m, 1), -1, "an fd was taken twice");
	cr_assert_eq(ipc_msg_take_fd(&m, 2), -1, "index past nfds");
	int other = m.fds[0];
	ipc_msg_close_fds(&m);
	cr_assert_eq(fcntl(other, F_GETFD), -1, "close_fds left fd 0 open");
	cr_assert_geq(fcntl(fd, F_GETFD), 0, "close_fds closed a taken fd");
	close(fd);
	msg_fini(&m);
	close(src[0]);
	close(src[1]);
	close(sv[0]);
	close(sv[1]);
}

/* A zero-length packet is EOF only when it carries nothing at all. */
Test(frame, empty_packet_with_fd_is_a_message)
{
	int sv[2];
	seqpair(sv);
	int src = new_file("e");
	cr_assert_eq(ipc_send(sv[0], "", 0, &src, 1, false), 0);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(m.len, 0);
	cr_assert_eq(m.nfds, 1);
	assert_received_fd(m.fds[0], src);
	msg_fini(&m);
	close(src);
	close(sv[0]);
	close(sv[1]);
}

/* ---- size bounds ----------------------------------------------------- */

Test(frame, max_size_packet_accepted)
{
	int sv[2];
	seqpair(sv);
	uint8_t *out = malloc(IPC_MAX_MSG);
	cr_assert_not_null(out);
	fill_pattern(out, IPC_MAX_MSG, 7);
	cr_assert_eq(ipc_send(sv[0], out, IPC_MAX_MSG, NULL, 0, false), 0);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(m.len, IPC_MAX_MSG);
	cr_assert_eq(memcmp(m.buf, out, IPC_MAX_MSG), 0);
	msg_fini(&m);
	free(out);
	close(sv[0]);
	close(sv[1]);
}

/* One byte over: rejected, its fds closed, and the packet after it is read
 * whole (SEQPACKET keeps boundaries, so nothing of the big one leaks in). */
static void oversize_then_good(size_t nfds)
{
	int sv[2];
	seqpair(sv);
	int sndbuf = 4 * IPC_MAX_MSG;
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)), 0);
	int src[2] = { new_file("o1"), new_file("o2") };
	int base = count_open_fds();

	size_t big = (size_t)IPC_MAX_MSG + 1;
	uint8_t *out = malloc(big);
	cr_assert_not_null(out);
	fill_pattern(out, big, 1);
	raw_send(sv[0], out, big, src, nfds);
	uint8_t next[100];
	fill_pattern(next, sizeof(next), 99);
	cr_assert_eq(ipc_send(sv[0], next, sizeof(next), NULL, 0, false), 0);

	struct ipc_msg m;
	msg_init(&m);
	int r = ipc_recv(sv[1], &m, false);
	cr_assert_eq(r, -EMSGSIZE, "got %d (%s)", r, ipc_strerror(r));
	cr_assert_eq(m.nfds, 0);
	cr_assert_eq(count_open_fds(), base, "fds of a dropped packet leaked");
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(m.len, sizeof(next));
	cr_assert_eq(memcmp(m.buf, next, sizeof(next)), 0);
	cr_assert_eq(m.nfds, 0);
	msg_fini(&m);
	free(out);
	close(src[0]);
	close(src[1]);
	close(sv[0]);
	close(sv[1]);
}

Test(frame, oversize_packet_rejected_next_ok)
{
	oversize_then_good(0);
}

Test(frame, oversize_packet_with_fds_closes_them)
{
	oversize_then_good(2);
}

/* ---- fd count bounds ------------------------------------------------- */

/* More fds than accepted: -ETOOMANYREFS, every fd that arrived closed, and
 * the stream goes on. Sends the same file n times: each arrives as its own
 * fd, so a leak of any one of them is counted. */
static void too_many_fds(size_t n)
{
	int sv[2];
	seqpair(sv);
	int src = new_file("many");
	int fds[RAW_MAX_FDS];
	for (size_t i = 0; i < n; i++)
		fds[i] = src;
	int base = count_open_fds();

	raw_send(sv[0], "many", 4, fds, n);
	cr_assert_eq(ipc_send(sv[0], "next", 4, &src, 1, false), 0);

	struct ipc_msg m;
	msg_init(&m);
	int r = ipc_recv(sv[1], &m, false);
	cr_assert_eq(r, -ETOOMANYREFS, "%zu fds: got %d (%s)", n, r,
		     ipc_strerror(r));
	cr_assert_eq(m.nfds, 0);
	cr_assert_eq(count_open_fds(), base, "%zu fds sent: %d leaked", n,
		     count_open_fds() - base);

	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(m.len, 4);
	cr_assert_eq(memcmp(m.buf, "next", 4), 0);
	cr_assert_eq(m.nfds, 1);
	assert_received_fd(m.fds[0], src);
	msg_fini(&m);
	cr_assert_eq(count_open_fds(), base);
	close(src);
	close(sv[0]);
	close(sv[1]);
}

Test(frame, max_fds_plus_one_rejected)
{
	too_many_fds(IPC_MAX_FDS + 1);
}

/* CMSG_SPACE rounds the receive buffer up to a multiple of 8, so one more
 * fd than IPC_MAX_FDS + 1 fits in it: the kernel delivers it without
 * MSG_CTRUNC. */
Test(frame, max_fds_plus_two_rejected)
{
	too_many_fds(IPC_MAX_FDS + 2);
}

Test(frame, sixteen_fds_rejected)
{
	too_many_fds(16);
}

Test(frame, expect_fds_wrong_count_closes_them)
{
	int sv[2];
	seqpair(sv);
	int src[2] = { new_file("x1"), new_file("x2") };
	int base = count_open_fds();
	cr_assert_eq(ipc_send(sv[0], "two", 3, src, 2, false), 0);
	cr_assert_eq(ipc_send(sv[0], "two", 3, src, 2, false), 0);

	struct ipc_msg m;
	msg_init(&m);
	/* fewer than carried */
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(count_open_fds(), base + 2);
	cr_assert_eq(ipc_msg_expect_fds(&m, 1), -EBADMSG);
	cr_assert_eq(m.nfds, 0);
	cr_assert_eq(count_open_fds(), base, "expect_fds(1) leaked");
	/* more than carried */
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(ipc_msg_expect_fds(&m, 3), -EBADMSG);
	cr_assert_eq(count_open_fds(), base, "expect_fds(3) leaked");
	/* none expected, none carried */
	cr_assert_eq(ipc_send(sv[0], "zero", 4, NULL, 0, false), 0);
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1);
	cr_assert_eq(ipc_msg_expect_fds(&m, 0), 0);
	cr_assert_eq(ipc_msg_expect_fds(&m, 1), -EBADMSG);
	msg_fini(&m);
	close(src[0]);
	close(src[1]);
	close(sv[0]);
	close(sv[1]);
}

/* ---- stream state ---------------------------------------------------- */

/* The peer sends its last words and closes with one of *our* packets still
 * unread: Linux then reports ECONNRESET to us once, ahead of the queued
 * packet. ipc_recv must still deliver that packet, then EOF (the supervisor
 * lost children's ChildFailed messages this way under load). */
Test(frame, last_words_survive_a_reset)
{
	int sv[2];
	seqpair(sv);
	cr_assert_eq(ipc_send(sv[1], "hello", 5, NULL, 0, false), 0, "ours, never read");
	cr_assert_eq(ipc_send(sv[0], "failed", 6, NULL, 0, false), 0, "the peer's last words");
	close(sv[0]);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, true), 1, "the queued packet is hidden by the reset");
	cr_assert_eq(m.len, 6);
	cr_assert_eq(memcmp(m.buf, "failed", 6), 0);
	cr_assert_eq(ipc_recv(sv[1], &m, true), 0, "then end of stream");
	msg_fini(&m);
	close(sv[1]);
}

Test(frame, eof_returns_zero)
{
	int sv[2];
	seqpair(sv);
	cr_assert_eq(ipc_send(sv[0], "last", 4, NULL, 0, false), 0);
	close(sv[0]);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, false), 1, "queued packet lost at close");
	cr_assert_eq(ipc_recv(sv[1], &m, false), 0);
	cr_assert_eq(m.len, 0);
	cr_assert_eq(ipc_recv(sv[1], &m, true), 0, "EOF again, nonblocking");
	msg_fini(&m);
	close(sv[1]);
}

Test(frame, nonblocking_recv_empty_is_eagain)
{
	int sv[2];
	seqpair(sv);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, true), -EAGAIN);
	cr_assert_eq(m.nfds, 0);
	msg_fini(&m);
	close(sv[0]);
	close(sv[1]);
}

Test(frame, nonblocking_send_full_is_eagain)
{
	int sv[2];
	seqpair(sv);
	uint8_t pkt[4096] = { 0 };
	int r = 0;
	for (int i = 0; i < 100000 && r == 0; i++)
		r = ipc_send(sv[0], pkt, sizeof(pkt), NULL, 0, true);
	cr_assert_eq(r, -EAGAIN, "got %d (%s)", r, ipc_strerror(r));
	close(sv[0]);
	close(sv[1]);
}

/* A gone peer is -EPIPE. SIGPIPE is set to its default (terminate) so that
 * a send without MSG_NOSIGNAL kills the test instead of passing it. Linux
 * (6.x at least) returns EPIPE without raising SIGPIPE for a SOCK_SEQPACKET
 * unix socket but does raise it for SOCK_STREAM, so the stream pair is what
 * proves MSG_NOSIGNAL is passed. */
Test(frame, closed_peer_is_epipe_without_sigpipe)
{
	signal(SIGPIPE, SIG_DFL);
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__PingRequest ping = HATCHERY__V1__PING_REQUEST__INIT;
	req.id = 1;
	req.body_case = HATCHERY__V1__REQUEST__BODY_PING;
	req.ping = &ping;

	int sv[2];
	seqpair(sv);
	close(sv[1]);
	cr_assert_eq(ipc_send(sv[0], "x", 1, NULL, 0, false), -EPIPE);
	cr_assert_eq(ipc_send_pb(sv[0], &req.base, NULL, 0, false), -EPIPE);
	close(sv[0]);

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[1]);
	cr_assert_eq(ipc_send(sv[0], "x", 1, NULL, 0, false), -EPIPE);
	cr_assert_eq(ipc_send_pb(sv[0], &req.base, NULL, 0, false), -EPIPE);
	close(sv[0]);
}

/* ---- ipc_send argument checks ---------------------------------------- */

Test(frame, send_too_many_fds_is_einval)
{
	int sv[2];
	seqpair(sv);
	int src = new_file("s");
	int fds[IPC_MAX_FDS + 1];
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(fds); i++)
		fds[i] = src;
	cr_assert_eq(ipc_send(sv[0], "x", 1, fds, HATCH_ARRAY_SIZE(fds), false),
		     -EINVAL);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, true), -EAGAIN, "something was sent");
	msg_fini(&m);
	close(src);
	close(sv[0]);
	close(sv[1]);
}

Test(frame, send_oversize_is_emsgsize)
{
	int sv[2];
	seqpair(sv);
	uint8_t *out = calloc(1, (size_t)IPC_MAX_MSG + 1);
	cr_assert_not_null(out);
	cr_assert_eq(ipc_send(sv[0], out, (size_t)IPC_MAX_MSG + 1, NULL, 0, false),
		     -EMSGSIZE);
	struct ipc_msg m;
	msg_init(&m);
	cr_assert_eq(ipc_recv(sv[1], &m, true), -EAGAIN, "something was sent");
	msg_fini(&m);
	free(out);
	close(sv[0]);
	close(sv[1]);
}

/* ---- protobuf on top ------------------------------------------------- */

static Hatchery__V1__Request *recv_request(int sock, struct ipc_msg *m)
{
	int r = ipc_recv(sock, m, false);
	cr_assert_eq(r, 1, "ipc_recv: %d (%s)", r, ipc_strerror(r));
	return hatchery__v1__request__unpack(NULL, m->len, m->buf);
}

Test(frame, send_pb_roundtrip_acquire)
{
	int sv[2];
	seqpair(sv);
	int src = new_file("pb");
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__AcquireRequest acq = HATCHERY__V1__ACQUIRE_REQUEST__INIT;
	char pool[] = "default";
	acq.pool = pool;
	acq.deadline_ms = 1500;
	req.id = UINT64_C(0x1234567890);
	req.body_case = HATCHERY__V1__REQUEST__BODY_ACQUIRE;
	req.acquire = &acq;
	cr_assert_eq(ipc_send_pb(sv[0], &req.base, &src, 1, false), 0);

	struct ipc_msg m;
	msg_init(&m);
	Hatchery__V1__Request *got = recv_request(sv[1], &m);
	cr_assert_not_null(got);
	cr_assert_eq(m.len, protobuf_c_message_get_packed_size(&req.base));
	cr_assert_eq(got->id, req.id);
	cr_assert_eq(got->body_case, HATCHERY__V1__REQUEST__BODY_ACQUIRE);
	cr_assert_not_null(got->acquire);
	cr_assert_str_eq(got->acquire->pool, "default");
	cr_assert_eq(got->acquire->deadline_ms, 1500);
	cr_assert_eq(m.nfds, 1);
	assert_received_fd(m.fds[0], src);
	hatchery__v1__request__free_unpacked(got, NULL);
	msg_fini(&m);
	close(src);
	close(sv[0]);
	close(sv[1]);
}

/* An acquire whose pool name is `len` bytes; caller frees the name. */
static void big_request(Hatchery__V1__Request *req,
			Hatchery__V1__AcquireRequest *acq, size_t len)
{
	hatchery__v1__request__init(req);
	hatchery__v1__acquire_request__init(acq);
	acq->pool = malloc(len + 1);
	cr_assert_not_null(acq->pool);
	memset(acq->pool, 'p', len);
	acq->pool[len] = '\0';
	req->body_case = HATCHERY__V1__REQUEST__BODY_ACQUIRE;
	req->acquire = acq;
}

/* Packed sizes around the limit (and past the 1 KiB stack buffer, so the
 * heap path of ipc_send_pb runs): exactly IPC_MAX_MSG goes through, one
 * byte more is -EMSGSIZE and sends nothing. */
Test(frame, send_pb_size_limit)
{
	int sv[2];
	seqpair(sv);
	int sndbuf = 4 * IPC_MAX_MSG;
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)), 0);
	Hatchery__V1__Request req;
	Hatchery__V1__AcquireRequest acq;
	size_t len = IPC_MAX_MSG - 8; /* 8 = tags and varint lengths */
	big_request(&req, &acq, len);
	cr_assert_eq(protobuf_c_message_get_packed_size(&req.base), IPC_MAX_MSG,
		     "test setup: packed size %zu",
		     protobuf_c_message_get_packed_size(&req.base));
	cr_assert_eq(ipc_send_pb(sv[0], &req.base, NULL, 0, false), 0);

	struct ipc_msg m;
	msg_init(&m);
	Hatchery__V1__Request *got = recv_request(sv[1], &m);
	cr_assert_not_null(got);
	cr_assert_eq(m.len, IPC_MAX_MSG);
	cr_assert_eq(got->body_case, HATCHERY__V1__REQUEST__BODY_ACQUIRE);
	cr_assert_eq(strlen(got->acquire->pool), len);
	hatchery__v1__request__free_unpacked(got, NULL);
	free(acq.pool);

	big_request(&req, &acq, len + 1);
	cr_assert_eq(protobuf_c_message_get_packed_size(&req.base),
		     (size_t)IPC_MAX_MSG + 1);
	cr_assert_eq(ipc_send_pb(sv[0], &req.base, NULL, 0, false), -EMSGSIZE);
	free(acq.pool);
	big_request(&req, &acq, 4 * IPC_MAX_MSG);
	cr_assert_eq(ipc_send_pb(sv[0], &req.base, NULL, 0, false), -EMSGSIZE);
	free(acq.pool);
	cr_assert_eq(ipc_recv(sv[1], &m, true), -EAGAIN, "an oversize pb was sent");
	msg_fini(&m);
	close(sv[0]);
	close(sv[1]);
}

static void *unpack_bytes(const uint8_t *b, size_t len)
{
	return protobuf_c_message_unpack(&hatchery__v1__request__descriptor, NULL,
					 len, b);
}

Test(frame, garbage_does_not_unpack)
{
	/* sanity: the descriptor does decode a well-formed Request, so a
	 * NULL below is about the bytes and not the set-up */
	static const uint8_t good[] = { 0x08, 0x05 }; /* id = 5 */
	Hatchery__V1__Request *ok = unpack_bytes(good, sizeof(good));
	cr_assert_not_null(ok);
	cr_assert_eq(ok->id, 5);
	protobuf_c_message_free_unpacked(&ok->base, NULL);

	static const struct {
		const char *what;
		uint8_t b[4];
		size_t len;
	} bad[] = {
		{ "truncated varint", { 0x08, 0xff }, 2 },
		{ "wire type 7", { 0x0f, 0x00 }, 2 },
		{ "wire type 6", { 0x0e, 0x00 }, 2 },
		{ "field number 0", { 0x00, 0x00 }, 2 },
		{ "length past end", { 0x5a, 0x05, 0x0a }, 3 },
	};
	int sv[2];
	seqpair(sv);
	struct ipc_msg m;
	msg_init(&m);
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(bad); i++) {
		cr_assert_eq(ipc_send(sv[0], bad[i].b, bad[i].len, NULL, 0, false), 0);
		Hatchery__V1__Request *got = recv_request(sv[1], &m);
		cr_assert_eq(m.len, bad[i].len);
		cr_assert_null(got, "%s decoded as a Request", bad[i].what);
	}
	msg_fini(&m);
	close(sv[0]);
	close(sv[1]);
}
