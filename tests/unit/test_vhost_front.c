/* test_vhost_front.c - vmproc's vhost-user disk without KVM: the device
 * (vmproc/devices/vhost_blk.c) and its frontend (vhost/frontend.c) against
 * the real backend (vhu_backend_serve in a thread, on a socketpair, its
 * image a memfd), and against broken backends.
 *
 * The test is the guest's driver: it writes the transport's registers as
 * Linux's virtio_mmio.c does, lays out a split ring in guest memory (a
 * memfd, vhost_guest.c), and plays KVM's part: the queue's "ioeventfd"
 * and "irqfd" are eventfds the test writes (a notify) and reads (the
 * backend's interrupt).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "backend.h"
#include "devices/vhost_blk.h"
#include "hatchery/v1/common.pb-c.h"
#include "testing.h"
#include "vhost_guest.h"

TestSuite(vhost_front, .timeout = 30);

#define SECTORS 64u
#define QNUM 8u

/* ---- the backend, in a thread ----------------------------------------- */

struct served {
	pthread_t t;
	int sock;           /* the backend's end */
	int r;
	struct hatch_err err;
	struct vhu_blk blk;
	int image;          /* memfd */
};

static void *serve_thread(void *p)
{
	struct served *sv = p;
	sv->r = vhu_backend_serve(sv->sock, &sv->blk, &sv->err);
	close(sv->sock);
	return NULL;
}

/* An image whose sector i is filled with the byte 'A' + i % 26. Opened by
 * the backend through /proc/self/fd, as a path. Returns our end. */
static int backend_start(struct served *sv)
{
	memset(sv, 0, sizeof(*sv));
	sv->image = memfd_create("vhost-front-image", MFD_CLOEXEC);
	cr_assert_geq(sv->image, 0);
	uint8_t sec[512];
	for (unsigned i = 0; i < SECTORS; i++) {
		memset(sec, 'A' + (int)(i % 26), sizeof(sec));
		cr_assert_eq(pwrite(sv->image, sec, sizeof(sec), (off_t)i * 512), 512);
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", sv->image);
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_blk_open(&sv->blk, path, false, &e), 0, "%s", e.msg);
	int s[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	sv->sock = s[1];
	cr_assert_eq(pthread_create(&sv->t, NULL, serve_thread, sv), 0);
	return s[0];
}

static void backend_join(struct served *sv)
{
	pthread_join(sv->t, NULL);
	vhu_blk_close(&sv->blk);
	close(sv->image);
}

/* ---- the machine's part: memory, eventfds, the device ------------------ */

struct rig {
	struct vg g;
	int kick, call;     /* eventfds: the ioeventfd's and the irqfd's */
	unsigned irqs;      /* the transport's own interrupts */
	struct vmp_vhost_blk dev;
};

static void *xlate(void *opaque, uint64_t gpa, uint64_t len)
{
	struct vg *g = opaque;
	if (gpa < VG_GPA || gpa - VG_GPA > VG_SIZE || len > VG_SIZE - (gpa - VG_GPA))
		return NULL;
	return g->host + (gpa - VG_GPA);
}

static void raise_irq(void *opaque)
{
	((struct rig *)opaque)->irqs++;
}

/* Returns vmp_vhost_blk_init's result, *err filled on failure. */
static int rig_init(struct rig *r, int sock, struct hatch_err *err)
{
	memset(r, 0, sizeof(*r));
	vg_init(&r->g, QNUM);
	r->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert(r->kick >= 0 && r->call >= 0);
	/* The backend's "uva" is our mapping's address, as in vmproc. */
	struct vhu_mem_region reg = { VG_GPA, VG_SIZE, (uint64_t)(uintptr_t)r->g.host, 0 };
	struct vmp_vhost_blk_params p = {
		.sock = sock, .regions = &reg, .nregions = 1, .mem_fd = r->g.fd,
		.xlate = xlate, .xlate_opaque = &r->g,
		.kick_fd = r->kick, .call_fd = r->call,
		.raise_irq = raise_irq, .irq_opaque = r,
	};
	return vmp_vhost_blk_init(&r->dev, &p, err);
}

static void rig_close(struct rig *r)
{
	close(r->kick);
	close(r->call);
	vg_close(&r->g);
}

static uint32_t rd(struct rig *r, uint64_t off)
{
	uint32_t v;
	vmp_virtio_mmio_read(&r->dev.mmio, off, &v, 4);
	return v;
}

static void wr(struct rig *r, uint64_t off, uint32_t v)
{
	vmp_virtio_mmio_write(&r->dev.mmio, off, &v, 4);
}

static uint64_t device_features(struct rig *r)
{
	wr(r, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint64_t f = (uint64_t)rd(r, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	wr(r, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	return f | rd(r, VIRTIO_MMIO_DEVICE_FEATURES);
}

/* Linux's probe, up to DRIVER_OK: which is when the backend takes the ring. */
static void driver_up(struct rig *r)
{
	wr(r, VIRTIO_MMIO_STATUS, 0);
	wr(r, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	uint64_t f = device_features(r);
	uint64_t want = f & (1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_BLK_F_FLUSH |
			     1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_SEG_MAX);
	wr(r, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(r, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)want);
	wr(r, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(r, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
	uint32_t st = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		      VIRTIO_CONFIG_S_FEATURES_OK;
	wr(r, VIRTIO_MMIO_STATUS, st);
	cr_assert(rd(r, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	wr(r, VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(r, VIRTIO_MMIO_QUEUE_NUM_MAX), VMP_VHOST_BLK_QUEUE_MAX);
	wr(r, VIRTIO_MMIO_QUEUE_NUM, QNUM);
	wr(r, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)(VG_GPA + VG_DESC));
	wr(r, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)((VG_GPA + VG_DESC) >> 32));
	wr(r, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(VG_GPA + VG_AVAIL));
	wr(r, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)((VG_GPA + VG_AVAIL) >> 32));
	wr(r, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(VG_GPA + VG_USED));
	wr(r, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)((VG_GPA + VG_USED) >> 32));
	wr(r, VIRTIO_MMIO_QUEUE_READY, 1);
	wr(r, VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* A read of `sector` as a three-descriptor chain at head 0, published
 * and notified. */
static void read_sector(struct rig *r, uint64_t sector)
{
	struct virtio_blk_outhdr *h = vg_ptr(&r->g, VG_GPA + VG_DATA);
	*h = (struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_IN, .sector = sector };
	uint8_t *status = vg_ptr(&r->g, VG_GPA + VG_DATA + 0x1000);
	*status = 0xff;
	memset(vg_ptr(&r->g, VG_GPA + VG_DATA + 0x200), 0, 512);
	vg_desc(&r->g, 0, VG_GPA + VG_DATA, sizeof(*h), VRING_DESC_F_NEXT, 1);
	vg_desc(&r->g, 1, VG_GPA + VG_DATA + 0x200, 512,
		VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	vg_desc(&r->g, 2, VG_GPA + VG_DATA + 0x1000, 1, VRING_DESC_F_WRITE, 0);
	vg_publish(&r->g, 0);
	uint64_t one = 1;
	cr_assert_eq(write(r->kick, &one, 8), 8); /* the guest's QueueNotify */
}

/* The backend's interrupt: the call eventfd, within 5 s. */
static void wait_call(struct rig *r)
{
	struct pollfd p = { .fd = r->call, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, (int)t_ms(5000)), 1, "the backend signalled the call fd");
	uint64_t n;
	cr_assert_eq(read(r->call, &n, 8), 8);
}

/* ---- the happy path ----------------------------------------------------- */

Test(vhost_front, request_served_by_backend)
{
	struct served sv;
	int s = backend_start(&sv);
	struct rig r;
	struct hatch_err err = { 0 };
	cr_assert_eq(rig_init(&r, s, &err), 0, "%s", err.msg);

	/* The transport shows a virtio-blk with the backend's config. */
	cr_expect_eq(rd(&r, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976u);
	cr_expect_eq(rd(&r, VIRTIO_MMIO_DEVICE_ID), 2u);
	uint32_t lo, hi;
	vmp_virtio_mmio_read(&r.dev.mmio, VIRTIO_MMIO_CONFIG, &lo, 4);
	vmp_virtio_mmio_read(&r.dev.mmio, VIRTIO_MMIO_CONFIG + 4, &hi, 4);
	cr_expect_eq(((uint64_t)hi << 32) | lo, SECTORS, "capacity from GET_CONFIG");
	/* Features: the backend's device bits and VERSION_1; nothing of the
	 * ring's (INDIRECT, EVENT_IDX) nor vhost-user's protocol bit. */
	uint64_t f = device_features(&r);
	cr_expect(f & (1ull << VIRTIO_F_VERSION_1));
	cr_expect(f & (1ull << VIRTIO_BLK_F_FLUSH));
	cr_expect_eq(f & (1ull << VIRTIO_RING_F_INDIRECT_DESC | 1ull << VIRTIO_RING_F_EVENT_IDX |
			  1ull << VHU_F_PROTOCOL_FEATURES), 0);

	driver_up(&r);
	cr_assert_null(vmp_vhost_blk_failed(&r.dev, NULL), "%s", vmp_vhost_blk_failed(&r.dev, NULL));
	cr_assert(r.dev.started, "DRIVER_OK handed the ring to the backend");
	cr_expect(rd(&r, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING,
		  "InterruptStatus reports used buffers it cannot see");

	read_sector(&r, 3);
	wait_call(&r);
	cr_assert_eq(vg_used_idx(&r.g), 1);
	uint32_t id, len;
	vg_used(&r.g, 0, &id, &len);
	cr_expect_eq(id, 0);
	cr_expect_eq(len, 513, "512 bytes of data and the status byte");
	cr_expect_eq(*(uint8_t *)vg_ptr(&r.g, VG_GPA + VG_DATA + 0x1000), VIRTIO_BLK_S_OK);
	uint8_t want[512];
	memset(want, 'A' + 3, sizeof(want));
	cr_expect_arr_eq(vg_ptr(&r.g, VG_GPA + VG_DATA + 0x200), want, 512);
	cr_expect_eq(r.irqs, 0, "vmproc raised no interrupt: the backend did");

	/* Nothing to say outside a request: the connection is quiet. */
	cr_expect_eq(vmp_vhost_blk_conn_event(&r.dev), 0);

	/* The driver resets the device: the ring comes back (GET_VRING_BASE);
	 * the driver can start again and the backend serves from index 0. */
	wr(&r, VIRTIO_MMIO_STATUS, 0);
	cr_assert_null(vmp_vhost_blk_failed(&r.dev, NULL), "%s", vmp_vhost_blk_failed(&r.dev, NULL));
	cr_expect(!r.dev.started);
	memset(r.g.host, 0, VG_DATA); /* a fresh ring, as a driver lays it out */
	r.g.avail_idx = 0;
	driver_up(&r);
	cr_assert(r.dev.started);
	read_sector(&r, 30);
	wait_call(&r);
	cr_assert_eq(vg_used_idx(&r.g), 1);
	memset(want, 'A' + 30 % 26, sizeof(want));
	cr_expect_arr_eq(vg_ptr(&r.g, VG_GPA + VG_DATA + 0x200), want, 512);

	/* The backend goes away: the device is dead with the reason. */
	shutdown(sv.sock, SHUT_RDWR);
	backend_join(&sv);
	struct pollfd p = { .fd = vmp_vhost_blk_pollfd(&r.dev), .events = POLLIN };
	cr_assert_eq(poll(&p, 1, (int)t_ms(5000)), 1);
	cr_expect_eq(vmp_vhost_blk_conn_event(&r.dev), -1);
	cr_assert_not_null(vmp_vhost_blk_failed(&r.dev, NULL));
	cr_expect(strstr(vmp_vhost_blk_failed(&r.dev, NULL), "the disk backend closed its connection"),
		  "%s", vmp_vhost_blk_failed(&r.dev, NULL));
	cr_expect(rd(&r, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_expect_eq(r.irqs, 1, "the driver heard of it (config interrupt)");
	close(s);
	rig_close(&r);
}

/* A guest that breaks its ring (a head index past the queue): the backend
 * stops the ring and signals the err eventfd vmproc gave it; the device
 * dies with a guest fault. */
Test(vhost_front, guest_breaks_ring)
{
	struct served sv;
	int s = backend_start(&sv);
	struct rig r;
	struct hatch_err err = { 0 };
	cr_assert_eq(rig_init(&r, s, &err), 0, "%s", err.msg);
	driver_up(&r);
	cr_assert(r.dev.started);
	cr_expect_eq(vmp_vhost_blk_err_event(&r.dev), 0, "nothing signalled yet");
	vg_publish(&r.g, 200); /* QNUM is 8 */
	uint64_t one = 1;
	cr_assert_eq(write(r.kick, &one, 8), 8);
	struct pollfd p = { .fd = vmp_vhost_blk_err_fd(&r.dev), .events = POLLIN };
	cr_assert_eq(poll(&p, 1, (int)t_ms(5000)), 1, "the backend signalled the err fd");
	cr_expect_eq(vmp_vhost_blk_err_event(&r.dev), -1);
	int code = 0;
	const char *why = vmp_vhost_blk_failed(&r.dev, &code);
	cr_assert_not_null(why);
	cr_expect(strstr(why, "the guest broke it"), "%s", why);
	cr_expect_eq(code, HATCHERY__V1__ERROR_CODE__GUEST_FAULT);
	cr_expect(rd(&r, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	close(s);
	backend_join(&sv);
	cr_expect_eq(sv.r, 0, "the backend saw the frontend hang up: %s", sv.err.msg);
	rig_close(&r);
}

/* ---- broken backends ----------------------------------------------------- */

/* A fake backend: answers GET_FEATURES as `mode` says, then waits for the
 * frontend to hang up. */
enum fake_mode { FAKE_CLOSE, FAKE_WRONG_REQUEST, FAKE_WRONG_SIZE, FAKE_NO_VERSION_1,
		 FAKE_REFUSE_OWNER };

struct fake {
	pthread_t t;
	int sock;
	enum fake_mode mode;
};

static void fake_reply(int s, uint32_t req, const void *p, uint32_t size)
{
	uint8_t b[64];
	struct vhu_hdr h = { req, VHU_VERSION | VHU_FLAG_REPLY, size };
	memcpy(b, &h, sizeof(h));
	memcpy(b + sizeof(h), p, size);
	(void)!write(s, b, sizeof(h) + size);
}

static void *fake_thread(void *p)
{
	struct fake *f = p;
	struct vhu_msg m;
	struct hatch_err err;
	uint64_t v;
	while (vhu_msg_recv(f->sock, &m, &err) == 1) {
		vhu_msg_close_fds(&m);
		switch (m.hdr.request) {
		case VHU_GET_FEATURES:
			if (f->mode == FAKE_CLOSE)
				goto out;
			v = f->mode == FAKE_NO_VERSION_1 ? 0 : 1ull << VIRTIO_F_VERSION_1 |
								1ull << VHU_F_PROTOCOL_FEATURES;
			fake_reply(f->sock, f->mode == FAKE_WRONG_REQUEST ? VHU_GET_QUEUE_NUM
									  : VHU_GET_FEATURES,
				   &v, f->mode == FAKE_WRONG_SIZE ? 4 : 8);
			break;
		case VHU_GET_PROTOCOL_FEATURES:
			v = 1ull << VHU_PROTOCOL_F_REPLY_ACK | 1ull << VHU_PROTOCOL_F_CONFIG;
			fake_reply(f->sock, m.hdr.request, &v, 8);
			break;
		case VHU_SET_OWNER: /* with NEED_REPLY: REPLY_ACK was negotiated */
			v = f->mode == FAKE_REFUSE_OWNER ? 1 : 0;
			fake_reply(f->sock, m.hdr.request, &v, 8);
			break;
		default:
			break;
		}
	}
out:
	/* Not close: the test counts its fds meanwhile; it closes after join. */
	shutdown(f->sock, SHUT_RDWR);
	return NULL;
}

static void broken_backend(enum fake_mode mode, const char *want)
{
	int s[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	struct fake f = { .sock = s[1], .mode = mode };
	cr_assert_eq(pthread_create(&f.t, NULL, fake_thread, &f), 0);
	int before = vg_open_fds();
	struct rig r;
	struct hatch_err err = { 0 };
	cr_assert_eq(rig_init(&r, s[0], &err), -1, "a broken backend is an error");
	cr_expect(strstr(err.msg, want), "message \"%s\" says \"%s\"", err.msg, want);
	cr_expect(strncmp(err.msg, "disk: ", 6) == 0, "%s", err.msg);
	rig_close(&r);
	cr_expect_eq(vg_open_fds(), before, "no fd leaked");
	close(s[0]);
	pthread_join(f.t, NULL);
	close(s[1]);
}

Test(vhost_front, backend_closes)
{
	broken_backend(FAKE_CLOSE, "GET_FEATURES: the backend closed its connection");
}

Test(vhost_front, reply_to_another_request)
{
	broken_backend(FAKE_WRONG_REQUEST, "the reply is to request 17 (GET_QUEUE_NUM)");
}

Test(vhost_front, reply_of_wrong_size)
{
	broken_backend(FAKE_WRONG_SIZE, "a 4-byte reply (want 8)");
}

Test(vhost_front, no_version_1)
{
	broken_backend(FAKE_NO_VERSION_1, "without VIRTIO_F_VERSION_1");
}

Test(vhost_front, reply_ack_refused)
{
	broken_backend(FAKE_REFUSE_OWNER, "SET_OWNER: the backend refused it (status 1)");
}
