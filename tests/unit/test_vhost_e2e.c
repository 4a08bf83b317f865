/* test_vhost_e2e.c - the vhost-user block backend end to end, with the
 * test as the frontend and the guest: guest memory is a memfd passed with
 * SET_MEM_TABLE, the ring is laid out in it (vhost_guest.c), the kick
 * eventfd is written and the call eventfd read.
 *
 * The happy path drives the real program (hatchery-vhost-blk, forked and
 * exec'd, on its listening socket): a sector written and read back. The
 * hostile frontends drive vhu_backend_serve in a thread on a socketpair,
 * so that the fds the backend holds can be counted after it gave up: a
 * garbage message, an fd flood, a bad memory region, a broken ring; and
 * the program once more with garbage, which must exit 1, not crash.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "backend.h"
#include "testing.h"
#include "vhost_frontend.h"
#include "vhost_guest.h"

TestSuite(vhost_e2e, .timeout = 30);

#define SECTORS 128u

/* ---- the program --------------------------------------------------- */

static char img[] = "/tmp/vhost-e2e-img-XXXXXX";
static char sock_path[108];

static void make_image(void)
{
	int fd = mkostemp(img, O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, SECTORS * 512), 0);
	close(fd);
}

static pid_t spawn_backend_with(const char *opt)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/vhost-e2e-%d.sock", getpid());
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl(HATCH_VHOST_BLK_PATH, "hatchery-vhost-blk", "--socket", sock_path,
		      "--image", img, opt, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static pid_t spawn_backend(void)
{
	return spawn_backend_with(NULL);
}

static int connect_backend(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock_path);
	for (unsigned waited = 0; waited < t_ms(5000); waited += 10) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return s;
		close(s);
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	cr_assert_fail("backend socket never appeared");
	return -1;
}

static int wait_exit(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "backend died of signal %d", WTERMSIG(st));
	return WEXITSTATUS(st);
}

/* A sector written and read back through the program; with --overlay the
 * image itself must not change. */
static void write_then_read(const char *opt)
{
	make_image();
	pid_t pid = spawn_backend_with(opt);
	int s = connect_backend();
	struct vg g;
	vg_init(&g, 16);
	int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	fe_handshake(s);
	struct vhu_config c = { .offset = 0, .size = 60 };
	fe_send(s, VHU_GET_CONFIG, 0, &c, 12 + 60, NULL, 0);
	struct vhu_config rc;
	fe_reply(s, &rc, sizeof(rc));
	struct virtio_blk_config cfg;
	memcpy(&cfg, rc.payload, 60);
	cr_expect_eq(cfg.capacity, SECTORS);
	fe_mem_table(s, &g);
	fe_ring(s, 16, call, kfd);

	memset(vg_ptr(&g, GPA(1)), 0x5c, 512);
	blk_req(&g, 0, 0, VIRTIO_BLK_T_OUT, 7, 512);
	kick(kfd);
	cr_assert(wait_fd(call, 5000), "the call eventfd after OUT");
	cr_expect_eq(vg_used_idx(&g), 1);
	cr_expect_eq(*(uint8_t *)vg_ptr(&g, GPA(2)), VIRTIO_BLK_S_OK);

	blk_req(&g, 3, 4, VIRTIO_BLK_T_IN, 7, 512);
	kick(kfd);
	cr_assert(wait_fd(call, 5000), "the call eventfd after IN");
	cr_expect_eq(vg_used_idx(&g), 2);
	cr_expect_eq(*(uint8_t *)vg_ptr(&g, GPA(6)), VIRTIO_BLK_S_OK);
	uint32_t id, len;
	vg_used(&g, 1, &id, &len);
	cr_expect_eq(id, 3);
	cr_expect_eq(len, 513);
	uint8_t want[512];
	memset(want, 0x5c, sizeof(want));
	cr_expect_eq(memcmp(vg_ptr(&g, GPA(5)), want, 512), 0, "read back what was written");

	fe_state(s, VHU_GET_VRING_BASE, 0, 0);
	struct vhu_vring_state st;
	fe_reply(s, &st, sizeof(st));
	cr_expect_eq(st.num, 2, "GET_VRING_BASE: two consumed");

	close(s);
	cr_expect_eq(wait_exit(pid), 0, "a clean exit when the frontend hangs up");
	int fd = open(img, O_RDONLY | O_CLOEXEC);
	uint8_t b[512];
	cr_assert_eq(pread(fd, b, 512, 7 * 512), 512);
	if (opt)
		cr_expect_eq(b[0], 0, "the overlay's base is unchanged");
	else
		cr_expect_eq(memcmp(b, want, 512), 0, "on the image");
	close(fd);
	close(call);
	close(kfd);
	vg_close(&g);
	unlink(img);
}

Test(vhost_e2e, write_then_read_a_sector)
{
	write_then_read(NULL);
}

Test(vhost_e2e, overlay_write_then_read_a_sector)
{
	write_then_read("--overlay=/tmp");
}

Test(vhost_e2e, program_exits_1_on_garbage)
{
	make_image();
	pid_t pid = spawn_backend();
	int s = connect_backend();
	const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	cr_assert_gt(write(s, junk, sizeof(junk)), 0);
	cr_expect_eq(wait_exit(pid), 1);
	close(s);
	unlink(img);
}

/* ---- hostile frontends against the backend in a thread -------------- */

static struct vhu_blk blk;

struct served {
	int sock;
	int r;
	struct hatch_err err;
};

static void *serve_thread(void *p)
{
	struct served *sv = p;
	sv->r = vhu_backend_serve(sv->sock, &blk, &sv->err);
	close(sv->sock);
	return NULL;
}

struct hostile {
	pthread_t t;
	struct served sv;
	int s;        /* the frontend's end */
	int baseline; /* open fds before the connection */
};

static void h_start(struct hostile *h)
{
	make_image();
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_blk_open(&blk, img, false, &e), 0, "%s", e.msg);
	h->baseline = vg_open_fds();
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	h->s = sv[0];
	h->sv = (struct served){ .sock = sv[1] };
	cr_assert_eq(pthread_create(&h->t, NULL, serve_thread, &h->sv), 0);
}

/* The backend ended the connection (r -1) or saw it end (0); either way
 * every fd it was given or opened is closed again. */
static void h_end(struct hostile *h, int want_r)
{
	char b;
	/* 0, or ECONNRESET when the backend left bytes unread. */
	cr_expect_leq(recv(h->s, &b, 1, 0), 0, "the backend closed its end");
	close(h->s);
	pthread_join(h->t, NULL);
	cr_expect_eq(h->sv.r, want_r, "%s", h->sv.err.msg);
	cr_expect_eq(vg_open_fds(), h->baseline, "no fd leaked");
	vhu_blk_close(&blk);
	unlink(img);
}

Test(vhost_e2e, garbage_header)
{
	struct hostile h;
	h_start(&h);
	uint8_t junk[12] = { 1, 0, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0 };
	cr_assert_eq(write(h.s, junk, sizeof(junk)), 12);
	h_end(&h, -1);
	cr_expect(strstr(h.sv.err.msg, "version"), "%s", h.sv.err.msg);
}

Test(vhost_e2e, fd_flood)
{
	struct hostile h;
	h_start(&h);
	int fds[64];
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	for (int i = 0; i < 64; i++)
		fds[i] = p[0];
	uint64_t idx = 0;
	fe_send(h.s, VHU_SET_VRING_CALL, 0, &idx, 8, fds, 64);
	close(p[0]);
	close(p[1]);
	h_end(&h, -1);
	cr_expect(strstr(h.sv.err.msg, "fds"), "%s", h.sv.err.msg);
}

Test(vhost_e2e, bad_region_nacked_then_fatal)
{
	struct hostile h;
	struct vg g;
	vg_init(&g, 16);
	h_start(&h);
	fe_handshake(h.s);
	/* Bigger than the memfd: refused, REPLY_ACK says so, we go on. */
	struct vhu_mem_table t = { .nregions = 1, .regions = { vg_region(&g) } };
	t.regions[0].size = 2ull * VG_SIZE;
	fe_send(h.s, VHU_SET_MEM_TABLE, VHU_FLAG_NEED_REPLY, &t, 8 + 32, &g.fd, 1);
	cr_expect_neq(fe_reply_u64(h.s, VHU_SET_MEM_TABLE), 0);
	fe_send(h.s, VHU_GET_FEATURES, 0, NULL, 0, NULL, 0);
	cr_expect_neq(fe_reply_u64(h.s, VHU_GET_FEATURES), 0, "still talking");
	/* A wrapping region without NEED_REPLY: the connection ends. */
	t.regions[0].gpa = UINT64_MAX - 4095;
	t.regions[0].size = 8192;
	fe_send(h.s, VHU_SET_MEM_TABLE, 0, &t, 8 + 32, &g.fd, 1);
	h_end(&h, -1);
	cr_expect(strstr(h.sv.err.msg, "SET_MEM_TABLE"), "%s", h.sv.err.msg);
	vg_close(&g);
}

Test(vhost_e2e, broken_ring_stops_backend_survives)
{
	struct hostile h;
	struct vg g;
	vg_init(&g, 16);
	int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int errfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h_start(&h);
	fe_handshake(h.s);
	fe_mem_table(h.s, &g);
	uint64_t idx = 0;
	fe_send(h.s, VHU_SET_VRING_ERR, 0, &idx, 8, &errfd, 1);
	fe_ring(h.s, 16, call, kfd);
	/* A data buffer outside guest memory. */
	blk_req(&g, 0, 0, VIRTIO_BLK_T_IN, 0, 512);
	vg_desc(&g, 1, VG_GPA + VG_SIZE - 256, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	kick(kfd);
	cr_expect(wait_fd(errfd, 5000), "the err eventfd");
	cr_expect_eq(vg_used_idx(&g), 0, "nothing used");
	fe_send(h.s, VHU_GET_FEATURES, 0, NULL, 0, NULL, 0);
	cr_expect_neq(fe_reply_u64(h.s, VHU_GET_FEATURES), 0, "the backend lives on");
	/* Garbage after that: refused, every fd it held closed. */
	uint8_t junk[12] = { 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	cr_assert_eq(write(h.s, junk, sizeof(junk)), 12);
	h_end(&h, -1);
	close(call);
	close(kfd);
	close(errfd);
	vg_close(&g);
}

Test(vhost_e2e, clean_hangup_releases_everything)
{
	struct hostile h;
	struct vg g;
	vg_init(&g, 16);
	int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h_start(&h);
	fe_handshake(h.s);
	fe_mem_table(h.s, &g);
	fe_ring(h.s, 16, call, kfd);
	shutdown(h.s, SHUT_WR);
	h_end(&h, 0);
	close(call);
	close(kfd);
	vg_close(&g);
}

/* Requests the backend refuses: with NEED_REPLY (REPLY_ACK negotiated)
 * the answer is 1 and the connection goes on; the answers it gives. */
Test(vhost_e2e, refusals_acked_and_answers)
{
	struct hostile h;
	h_start(&h);
	fe_handshake(h.s);
	fe_send(h.s, VHU_GET_QUEUE_NUM, 0, NULL, 0, NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_GET_QUEUE_NUM), 1);
	fe_send(h.s, VHU_GET_MAX_MEM_SLOTS, 0, NULL, 0, NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_GET_MAX_MEM_SLOTS), VHU_MAX_MEM_REGIONS);

	struct vhu_config c = { .offset = 0, .size = 8 };
	fe_send(h.s, VHU_GET_CONFIG, 0, &c, 12 + 8, NULL, 0);
	struct vhu_config rc;
	struct vhu_hdr rh = fe_reply(h.s, &rc, sizeof(rc));
	cr_expect_eq(rh.size, 12 + 8);
	uint64_t cap;
	memcpy(&cap, rc.payload, 8);
	cr_expect_eq(cap, SECTORS);

	fe_send(h.s, VHU_SET_CONFIG, VHU_FLAG_NEED_REPLY, &c, 12 + 8, NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_SET_CONFIG), 1, "config is read-only");
	struct vhu_vring_state st = { 1, 16 };
	fe_send(h.s, VHU_SET_VRING_NUM, VHU_FLAG_NEED_REPLY, &st, 8, NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_SET_VRING_NUM), 1, "ring 1 does not exist");
	st = (struct vhu_vring_state){ 0, 17 };
	fe_send(h.s, VHU_SET_VRING_NUM, VHU_FLAG_NEED_REPLY, &st, 8, NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_SET_VRING_NUM), 1, "not a power of 2");
	uint64_t v = VHU_VRING_NOFD;
	fe_send(h.s, VHU_SET_VRING_KICK, VHU_FLAG_NEED_REPLY, &v, 8, NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_SET_VRING_KICK), 1, "no polling mode");
	fe_u64(h.s, VHU_SET_FEATURES, VHU_FLAG_NEED_REPLY,
	       1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC);
	cr_expect_eq(fe_reply_u64(h.s, VHU_SET_FEATURES), 1, "INDIRECT is not offered");
	struct vhu_mem_single rm = { .region = { 0x1000, 0x1000, 0x1000, 0 } };
	fe_send(h.s, VHU_REM_MEM_REG, VHU_FLAG_NEED_REPLY, &rm, sizeof(rm), NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_REM_MEM_REG), 1, "no such region");

	/* Config bytes past the space, without NEED_REPLY: the end. */
	c = (struct vhu_config){ .offset = 250, .size = 10 };
	fe_send(h.s, VHU_GET_CONFIG, 0, &c, 12 + 10, NULL, 0);
	h_end(&h, -1);
	cr_expect(strstr(h.sv.err.msg, "GET_CONFIG"), "%s", h.sv.err.msg);
}

Test(vhost_e2e, version_1_required)
{
	struct hostile h;
	h_start(&h);
	fe_u64(h.s, VHU_SET_FEATURES, 0, 1ull << VIRTIO_BLK_F_FLUSH);
	h_end(&h, -1);
	cr_expect(strstr(h.sv.err.msg, "VIRTIO_F_VERSION_1"), "%s", h.sv.err.msg);
}

/* Memory given region by region (CONFIGURE_MEM_SLOTS): I/O through the
 * ring works; removing the ring's region stops the ring, not the backend. */
Test(vhost_e2e, add_and_remove_regions)
{
	struct hostile h;
	struct vg g;
	vg_init(&g, 16);
	int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int kfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h_start(&h);
	fe_handshake(h.s);
	struct vhu_mem_single r = { .region = vg_region(&g) };
	fe_send(h.s, VHU_ADD_MEM_REG, VHU_FLAG_NEED_REPLY, &r, sizeof(r), &g.fd, 1);
	cr_assert_eq(fe_reply_u64(h.s, VHU_ADD_MEM_REG), 0);
	fe_send(h.s, VHU_ADD_MEM_REG, VHU_FLAG_NEED_REPLY, &r, sizeof(r), &g.fd, 1);
	cr_expect_eq(fe_reply_u64(h.s, VHU_ADD_MEM_REG), 1, "overlaps the first");
	fe_ring(h.s, 16, call, kfd);

	blk_req(&g, 0, 0, VIRTIO_BLK_T_GET_ID, 0, VHU_BLK_ID_BYTES);
	kick(kfd);
	cr_assert(wait_fd(call, 5000));
	cr_expect_eq(*(uint8_t *)vg_ptr(&g, GPA(2)), VIRTIO_BLK_S_OK);
	cr_expect_eq(strncmp(vg_ptr(&g, GPA(1)), "vhost-e2e-img-", 14), 0);

	fe_send(h.s, VHU_REM_MEM_REG, VHU_FLAG_NEED_REPLY, &r, sizeof(r), NULL, 0);
	cr_expect_eq(fe_reply_u64(h.s, VHU_REM_MEM_REG), 1, "the ring's memory went away");
	blk_req(&g, 3, 4, VIRTIO_BLK_T_FLUSH, 0, 0);
	kick(kfd);
	fe_state(h.s, VHU_GET_VRING_BASE, 0, 0);
	struct vhu_vring_state st;
	fe_reply(h.s, &st, sizeof(st));
	cr_expect_eq(st.num, 1, "only the request before the removal");
	cr_expect_eq(vg_used_idx(&g), 1);
	shutdown(h.s, SHUT_WR);
	h_end(&h, 0);
	close(call);
	close(kfd);
	vg_close(&g);
}

/* Not eventfds: a kick pipe whose writer is gone (POLLHUP for ever) stops
 * the ring instead of spinning the loop; a call pipe that is full does not
 * block the backend (O_NONBLOCK). */
Test(vhost_e2e, kick_and_call_fds_that_are_not_eventfds)
{
	struct hostile h;
	struct vg g;
	vg_init(&g, 16);
	int kp[2], cp[2];
	cr_assert_eq(pipe2(kp, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(cp, O_CLOEXEC | O_NONBLOCK), 0);
	while (write(cp[1], &(char[4096]){ 0 }, 4096) > 0)
		; /* full */
	int errfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h_start(&h);
	fe_handshake(h.s);
	fe_mem_table(h.s, &g);
	uint64_t idx = 0;
	fe_send(h.s, VHU_SET_VRING_ERR, 0, &idx, 8, &errfd, 1);
	fe_ring(h.s, 16, cp[1], kp[0]);

	/* A request completes: the call "eventfd" is a full pipe. */
	blk_req(&g, 0, 0, VIRTIO_BLK_T_FLUSH, 0, 0);
	cr_assert_eq(write(kp[1], "k", 1), 1);
	fe_send(h.s, VHU_GET_FEATURES, 0, NULL, 0, NULL, 0);
	cr_expect_neq(fe_reply_u64(h.s, VHU_GET_FEATURES), 0, "not blocked on the call fd");
	cr_expect_eq(vg_used_idx(&g), 1);

	close(kp[1]); /* POLLHUP on the kick fd from now on */
	h.baseline--; /* it was counted */
	cr_expect(wait_fd(errfd, 5000), "the ring stopped, said on the err eventfd");
	blk_req(&g, 3, 4, VIRTIO_BLK_T_FLUSH, 0, 0);
	fe_send(h.s, VHU_GET_FEATURES, 0, NULL, 0, NULL, 0);
	cr_expect_neq(fe_reply_u64(h.s, VHU_GET_FEATURES), 0, "the backend lives on");
	cr_expect_eq(vg_used_idx(&g), 1, "a stopped ring serves nothing");
	shutdown(h.s, SHUT_WR);
	h_end(&h, 0);
	close(kp[0]);
	close(cp[0]);
	close(cp[1]);
	close(errfd);
	vg_close(&g);
}
