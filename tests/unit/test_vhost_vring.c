/* test_vhost_vring.c - a vhost-user ring on the backend side
 * (vhost/vring.c over vmproc/devices/virtqueue.c), with guest memory in a
 * memfd mapped through vhost/mem.c and the test as the guest driver:
 * chains read, loops and bad indices and out-of-region buffers refused,
 * the base kept across stop/start, notification through the call
 * eventfd, the err eventfd on a broken ring. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/virtio_ring.h>

#include "vhost_guest.h"
#include "vring.h"

TestSuite(vhost_vring, .timeout = 10);

struct fixture {
	struct vg g;
	struct vhu_mem mem;
	struct vhu_vring vr;
	int call, err; /* the test's copies of the eventfds */
	struct vmp_vq_elem e;
};

static struct fixture f;

static void setup(uint16_t num)
{
	vg_init(&f.g, num);
	vhu_mem_init(&f.mem);
	struct vhu_mem_region r = vg_region(&f.g);
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_mem_add(&f.mem, &r, f.g.fd, &e), 0, "%s", e.msg);
	vhu_vring_init(&f.vr, &f.mem);
	cr_assert_eq(vhu_vring_set_num(&f.vr, num, &e), 0, "%s", e.msg);
	struct vhu_vring_addr a = vg_addr(0);
	cr_assert_eq(vhu_vring_set_addr(&f.vr, &a, &e), 0, "%s", e.msg);
	f.call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f.err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vhu_vring_set_kick(&f.vr, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	vhu_vring_set_call(&f.vr, fcntl(f.call, F_DUPFD_CLOEXEC, 0));
	vhu_vring_set_err(&f.vr, fcntl(f.err, F_DUPFD_CLOEXEC, 0));
	vhu_vring_set_enable(&f.vr, true);
}

static void start(void)
{
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_vring_start(&f.vr, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
	vhu_vring_close(&f.vr);
	vhu_mem_clear(&f.mem);
	close(f.call);
	close(f.err);
	vg_close(&f.g);
}

static uint64_t count(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) < 0)
		return 0;
	return v;
}

#define DATA(n) (VG_GPA + VG_DATA + 0x1000u * (n))

Test(vhost_vring, pop_push_notify)
{
	setup(16);
	start();
	strcpy(vg_ptr(&f.g, DATA(0)), "hello");
	vg_desc(&f.g, 3, DATA(0), 6, VRING_DESC_F_NEXT, 7);
	vg_desc(&f.g, 7, DATA(1), 100, VRING_DESC_F_WRITE, 0);
	vg_publish(&f.g, 3);
	cr_assert_eq(vhu_vring_pop(&f.vr, &f.e), 1);
	cr_expect_eq(f.e.head, 3);
	cr_expect_eq(f.e.nread, 1);
	cr_expect_eq(f.e.nwrite, 1);
	cr_expect_str_eq(f.e.iov[0].iov_base, "hello");
	cr_expect_eq(f.e.iov[1].iov_len, 100);
	memcpy(f.e.iov[1].iov_base, "back", 5); /* the backend's own mapping */
	cr_expect_str_eq(vg_ptr(&f.g, DATA(1)), "back", "MAP_SHARED: the guest sees it");
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), 0, "nothing more");
	cr_assert_eq(vhu_vring_push(&f.vr, 3, 42), 0);
	vhu_vring_notify(&f.vr);
	cr_expect_eq(vg_used_idx(&f.g), 1);
	uint32_t id, len;
	vg_used(&f.g, 0, &id, &len);
	cr_expect_eq(id, 3);
	cr_expect_eq(len, 42);
	cr_expect_eq(count(f.call), 1, "call eventfd signalled");

	vg_set_avail_flags(&f.g, VRING_AVAIL_F_NO_INTERRUPT);
	vg_publish(&f.g, 3);
	cr_assert_eq(vhu_vring_pop(&f.vr, &f.e), 1);
	vhu_vring_push(&f.vr, 3, 0);
	vhu_vring_notify(&f.vr);
	cr_expect_eq(count(f.call), 0, "NO_INTERRUPT honoured");
	teardown();
}

Test(vhost_vring, base_kept_across_stop_and_start)
{
	setup(8);
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_vring_set_base(&f.vr, 5, &e), 0);
	/* The driver is at 5 already: entries 0..4 were consumed before. */
	for (int i = 0; i < 5; i++)
		vg_publish(&f.g, 0);
	vg_desc(&f.g, 1, DATA(0), 16, 0, 0);
	vg_publish(&f.g, 1);
	start();
	cr_assert_eq(vhu_vring_pop(&f.vr, &f.e), 1);
	cr_expect_eq(f.e.head, 1, "slot 5 popped, not slot 0");
	cr_expect_eq(vhu_vring_stop(&f.vr), 6, "GET_VRING_BASE: next to consume");
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), 0, "stopped");
	cr_expect_eq(vhu_vring_set_base(&f.vr, 70000, &e), -1, "16-bit index");
	start();
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), 0, "resumed at 6: nothing new");
	cr_expect_eq(vhu_vring_set_num(&f.vr, 4, &e), -1, "not while started");
	teardown();
}

Test(vhost_vring, disabled_ring_not_popped)
{
	setup(8);
	vhu_vring_set_enable(&f.vr, false);
	start();
	vg_desc(&f.g, 0, DATA(0), 16, 0, 0);
	vg_publish(&f.g, 0);
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), 0);
	vhu_vring_set_enable(&f.vr, true);
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), 1);
	teardown();
}

/* Each broken ring: pop fails with -EIO, the err eventfd fires once, and
 * the ring stays broken. */
static void expect_broken(void)
{
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), -EIO);
	cr_expect_eq(count(f.err), 1, "err eventfd signalled");
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), -EIO);
	cr_expect_eq(count(f.err), 0, "only once");
	cr_expect_not(vhu_vring_ready(&f.vr));
}

Test(vhost_vring, loop_refused)
{
	setup(8);
	start();
	vg_desc(&f.g, 0, DATA(0), 16, VRING_DESC_F_NEXT, 1);
	vg_desc(&f.g, 1, DATA(1), 16, VRING_DESC_F_NEXT, 0);
	vg_publish(&f.g, 0);
	expect_broken();
	teardown();
}

Test(vhost_vring, self_loop_refused)
{
	setup(8);
	start();
	vg_desc(&f.g, 2, DATA(0), 16, VRING_DESC_F_NEXT, 2);
	vg_publish(&f.g, 2);
	expect_broken();
	teardown();
}

Test(vhost_vring, head_out_of_range)
{
	setup(8);
	start();
	vg_publish(&f.g, 8);
	expect_broken();
	teardown();
}

Test(vhost_vring, next_out_of_range)
{
	setup(8);
	start();
	vg_desc(&f.g, 0, DATA(0), 16, VRING_DESC_F_NEXT, 200);
	vg_publish(&f.g, 0);
	expect_broken();
	teardown();
}

Test(vhost_vring, buffer_outside_guest_memory)
{
	uint64_t bad[][2] = {
		{ VG_GPA - 16, 16 },                 /* below the region */
		{ VG_GPA + VG_SIZE - 8, 16 },        /* runs off its end */
		{ VG_GPA + VG_SIZE, 1 },             /* just past it */
		{ VG_UVA + VG_DATA, 16 },            /* a uva is not a gpa */
		{ UINT64_MAX - 4, 16 },              /* wraps */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setup(8);
		start();
		vg_desc(&f.g, 0, bad[i][0], (uint32_t)bad[i][1], 0, 0);
		vg_publish(&f.g, 0);
		expect_broken();
		teardown();
	}
}

Test(vhost_vring, indirect_and_read_after_write_refused)
{
	setup(8);
	start();
	vg_desc(&f.g, 0, DATA(0), 16, VRING_DESC_F_INDIRECT, 0);
	vg_publish(&f.g, 0);
	expect_broken();
	teardown();

	setup(8);
	start();
	vg_desc(&f.g, 0, DATA(0), 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	vg_desc(&f.g, 1, DATA(1), 16, 0, 0);
	vg_publish(&f.g, 0);
	expect_broken();
	teardown();
}

Test(vhost_vring, avail_idx_too_far_ahead)
{
	setup(8);
	start();
	for (int i = 0; i < 9; i++)
		vg_publish(&f.g, 0);
	vg_desc(&f.g, 0, DATA(0), 16, 0, 0);
	expect_broken();
	teardown();
}

Test(vhost_vring, start_checks)
{
	struct hatch_err e = { 0 };
	setup(8);
	struct vhu_vring_addr a = vg_addr(0);
	a.used = VG_UVA + VG_SIZE - 8; /* used ring runs off the region */
	cr_assert_eq(vhu_vring_set_addr(&f.vr, &a, &e), 0);
	cr_expect_eq(vhu_vring_start(&f.vr, &e), -1);
	cr_expect(strstr(e.msg, "not inside guest memory"), "%s", e.msg);
	a = vg_addr(0);
	a.desc += 8; /* misaligned descriptor table */
	cr_assert_eq(vhu_vring_set_addr(&f.vr, &a, &e), 0);
	cr_expect_eq(vhu_vring_start(&f.vr, &e), -1);
	a = vg_addr(0);
	a.flags = 1; /* logging */
	cr_expect_eq(vhu_vring_set_addr(&f.vr, &a, &e), -1);
	teardown();

	setup(8);
	vhu_vring_set_kick(&f.vr, -1);
	cr_expect_eq(vhu_vring_start(&f.vr, &e), -1, "no kick fd");
	teardown();

	vhu_vring_init(&f.vr, &f.mem);
	uint32_t nums[] = { 0, 3, 6, 2048, 65536 };
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		cr_expect_eq(vhu_vring_set_num(&f.vr, nums[i], &e), -1, "num %u", nums[i]);
}

/* QEMU's virtio-mmio gives the driver 1024 (docs/vhost.md): taken, with a
 * chain of up to VMP_VQ_MAX_SEGS segments; one more breaks the ring. */
Test(vhost_vring, queue_of_1024)
{
	setup(1024);
	start();
	for (uint16_t i = 0; i < VMP_VQ_MAX_SEGS; i++)
		vg_desc(&f.g, i, DATA(0), 16, i + 1 < VMP_VQ_MAX_SEGS ? VRING_DESC_F_NEXT : 0,
			(uint16_t)(i + 1));
	vg_publish(&f.g, 0);
	cr_assert_eq(vhu_vring_pop(&f.vr, &f.e), 1);
	cr_expect_eq(f.e.nread, VMP_VQ_MAX_SEGS);
	cr_assert_eq(vhu_vring_push(&f.vr, f.e.head, 0), 0);
	for (uint16_t i = 0; i <= VMP_VQ_MAX_SEGS; i++)
		vg_desc(&f.g, (uint16_t)(500 + i), DATA(0), 16,
			i < VMP_VQ_MAX_SEGS ? VRING_DESC_F_NEXT : 0, (uint16_t)(501 + i));
	vg_publish(&f.g, 500);
	expect_broken();
	teardown();
}

Test(vhost_vring, remap_after_mem_table_change)
{
	setup(8);
	start();
	vg_desc(&f.g, 0, DATA(0), 16, 0, 0);
	vg_publish(&f.g, 0);
	cr_assert_eq(vhu_vring_pop(&f.vr, &f.e), 1);
	cr_assert_eq(vhu_vring_push(&f.vr, 0, 0), 0);
	/* A new table with the same region: a new mapping. */
	struct vhu_mem_table t = { .nregions = 1, .regions = { vg_region(&f.g) } };
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_mem_replace(&f.mem, &t, &f.g.fd, &e), 0, "%s", e.msg);
	cr_assert_eq(vhu_vring_remap(&f.vr, &e), 0, "%s", e.msg);
	vg_publish(&f.g, 0);
	cr_assert_eq(vhu_vring_pop(&f.vr, &f.e), 1, "indices kept");
	cr_assert_eq(vhu_vring_push(&f.vr, 0, 0), 0);
	cr_expect_eq(vg_used_idx(&f.g), 2);
	/* A table without the ring's region: the ring stops. */
	t.regions[0].gpa += 2 * VG_SIZE;
	t.regions[0].uva += 2 * VG_SIZE;
	cr_assert_eq(vhu_mem_replace(&f.mem, &t, &f.g.fd, &e), 0, "%s", e.msg);
	cr_expect_eq(vhu_vring_remap(&f.vr, &e), -1);
	cr_expect_eq(vhu_vring_pop(&f.vr, &f.e), 0);
	teardown();
}
