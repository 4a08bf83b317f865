/* test_vhost_blk.c - virtio-blk requests on a temporary image file
 * (vhost/blk.c): each request type's effect on the file and its status
 * byte, chains of the wrong shape, ranges past the end, read-only. The
 * chains are built by hand (struct vmp_vq_elem over local buffers): the
 * ring is test_vhost_vring's business. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/virtio_config.h>

#include "blk.h"

TestSuite(vhost_blk, .timeout = 10);

#define SECTORS 64u

static char path[] = "/tmp/vhost-blk-test-XXXXXX";
static struct vhu_blk blk;

static void open_image(bool ro)
{
	int fd = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(fd, 0);
	uint8_t sector[VHU_BLK_SECTOR];
	for (unsigned s = 0; s < SECTORS; s++) {
		memset(sector, 0x10 + (int)s, sizeof(sector));
		cr_assert_eq(pwrite(fd, sector, sizeof(sector), s * VHU_BLK_SECTOR), VHU_BLK_SECTOR);
	}
	cr_assert_eq(pwrite(fd, "tail", 4, SECTORS * VHU_BLK_SECTOR), 4,
		     "a partial sector at the end is not disk");
	close(fd);
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_blk_open(&blk, path, ro, &e), 0, "%s", e.msg);
}

static void close_image(void)
{
	vhu_blk_close(&blk);
	unlink(path);
	strcpy(path, "/tmp/vhost-blk-test-XXXXXX");
}

static uint8_t file_byte(uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t b = 0xee;
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	close(fd);
	return b;
}

/* A chain: the header, `nr` more readable buffers, `nw` writable buffers,
 * then the status byte. */
struct chain {
	struct vmp_vq_elem e;
	struct virtio_blk_outhdr h;
	uint8_t status;
};

static void chain(struct chain *c, uint32_t type, uint64_t sector)
{
	memset(&c->e, 0, sizeof(c->e));
	c->h = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	c->status = 0xff;
	c->e.iov[0] = (struct iovec){ &c->h, sizeof(c->h) };
	c->e.nread = 1;
	c->e.read_len = sizeof(c->h);
}

static void add(struct chain *c, void *p, size_t len, bool writable)
{
	c->e.iov[c->e.nread + c->e.nwrite] = (struct iovec){ p, len };
	if (writable) {
		c->e.nwrite++;
		c->e.write_len += len;
	} else {
		cr_assert_eq(c->e.nwrite, 0);
		c->e.nread++;
		c->e.read_len += len;
	}
}

static uint32_t run(struct chain *c)
{
	add(c, &c->status, 1, true);
	return vhu_blk_request(&blk, &c->e);
}

Test(vhost_blk, out_then_in)
{
	open_image(false);
	struct chain c;
	static uint8_t a[VHU_BLK_SECTOR], b[VHU_BLK_SECTOR + 100];
	memset(a, 0xa1, sizeof(a));
	memset(b, 0xb2, sizeof(b));
	chain(&c, VIRTIO_BLK_T_OUT, 3);
	add(&c, a, sizeof(a), false);
	add(&c, b, 100, false);
	add(&c, b + 100, VHU_BLK_SECTOR - 100, false); /* two sectors in three pieces */
	cr_expect_eq(run(&c), 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(file_byte(3 * 512), 0xa1);
	cr_expect_eq(file_byte(4 * 512 + 511), 0xb2);
	cr_expect_eq(file_byte(5 * 512), 0x15, "the next sector untouched");

	static uint8_t in[3 * VHU_BLK_SECTOR];
	chain(&c, VIRTIO_BLK_T_IN, 2);
	add(&c, in, 700, true);
	add(&c, in + 700, sizeof(in) - 700, true);
	cr_expect_eq(run(&c), sizeof(in) + 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(in[0], 0x12);
	cr_expect_eq(in[512], 0xa1);
	cr_expect_eq(in[1023], 0xa1);
	cr_expect_eq(in[1024], 0xb2);
	cr_expect_eq(in[1535], 0xb2);
	close_image();
}

Test(vhost_blk, last_sector_and_past_the_end)
{
	open_image(false);
	cr_expect_eq(blk.capacity, SECTORS);
	struct chain c;
	static uint8_t buf[2 * VHU_BLK_SECTOR];
	chain(&c, VIRTIO_BLK_T_IN, SECTORS - 1);
	add(&c, buf, VHU_BLK_SECTOR, true);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(buf[0], 0x10 + SECTORS - 1);

	uint64_t bad[] = { SECTORS - 1, SECTORS, UINT64_MAX, UINT64_MAX / 512 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		chain(&c, VIRTIO_BLK_T_IN, bad[i]);
		add(&c, buf, sizeof(buf), true);
		cr_expect_eq(run(&c), 1, "nothing but the status written");
		cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR, "IN at %llu", (unsigned long long)bad[i]);
		chain(&c, VIRTIO_BLK_T_OUT, bad[i]);
		add(&c, buf, sizeof(buf), false);
		run(&c);
		cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR, "OUT at %llu", (unsigned long long)bad[i]);
	}
	cr_expect_eq(file_byte(SECTORS * 512), 't', "the partial tail untouched");
	close_image();
}

Test(vhost_blk, wrong_shapes_are_ioerr)
{
	open_image(false);
	struct chain c;
	static uint8_t buf[VHU_BLK_SECTOR];
	/* IN whose data the device could only read. */
	chain(&c, VIRTIO_BLK_T_IN, 0);
	add(&c, buf, sizeof(buf), false);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	/* OUT whose data is writable (the device would write nothing). */
	chain(&c, VIRTIO_BLK_T_OUT, 0);
	add(&c, buf, sizeof(buf), true);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	cr_expect_eq(file_byte(0), 0x10);
	/* Not a whole number of sectors. */
	chain(&c, VIRTIO_BLK_T_IN, 0);
	add(&c, buf, 100, true);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	chain(&c, VIRTIO_BLK_T_OUT, 0);
	add(&c, buf, 511, false);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	/* A header cut short. */
	chain(&c, VIRTIO_BLK_T_IN, 0);
	c.e.iov[0].iov_len = 8;
	c.e.read_len = 8;
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	/* No writable byte at all: no status, nothing written. */
	chain(&c, VIRTIO_BLK_T_FLUSH, 0);
	cr_expect_eq(vhu_blk_request(&blk, &c.e), 0);
	cr_expect_eq(c.status, 0xff);
	close_image();
}

Test(vhost_blk, flush_get_id_unsupported)
{
	open_image(false);
	struct chain c;
	chain(&c, VIRTIO_BLK_T_FLUSH, 0);
	cr_expect_eq(run(&c), 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);

	char id[VHU_BLK_ID_BYTES + 4];
	memset(id, '#', sizeof(id));
	chain(&c, VIRTIO_BLK_T_GET_ID, 0);
	add(&c, id, VHU_BLK_ID_BYTES, true);
	cr_expect_eq(run(&c), VHU_BLK_ID_BYTES + 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(strncmp(id, "vhost-blk-test-", 15), 0, "%.20s", id);
	memset(id, '#', sizeof(id));
	chain(&c, VIRTIO_BLK_T_GET_ID, 0);
	add(&c, id, 8, true);
	cr_expect_eq(run(&c), 9, "as much as fits");
	cr_expect_eq(id[8], '#');
	chain(&c, VIRTIO_BLK_T_GET_ID, 0);
	add(&c, id, VHU_BLK_ID_BYTES, false);
	cr_expect_eq(run(&c), 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR, "the serial's buffer must be writable");

	uint32_t types[] = { 2 /* SCSI */, 5, VIRTIO_BLK_T_SECURE_ERASE, 0x80000000u,
			     VIRTIO_BLK_T_OUT | 0x80000000u };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		chain(&c, types[i], 0);
		run(&c);
		cr_expect_eq(c.status, VIRTIO_BLK_S_UNSUPP, "type 0x%x", types[i]);
	}
	close_image();
}

static void zero_req(struct chain *c, uint32_t type,
		     struct virtio_blk_discard_write_zeroes *s, unsigned n)
{
	chain(c, type, 0);
	add(c, s, n * sizeof(*s), false);
	run(c);
}

Test(vhost_blk, discard_and_write_zeroes)
{
	open_image(false);
	struct chain c;
	struct virtio_blk_discard_write_zeroes s[VHU_BLK_MAX_SEGS + 1] = {
		{ .sector = 8, .num_sectors = 8 }, { .sector = 20, .num_sectors = 1 },
	};
	zero_req(&c, VIRTIO_BLK_T_DISCARD, s, 2);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(file_byte(8 * 512), 0, "punched");
	cr_expect_eq(file_byte(16 * 512 - 1), 0);
	cr_expect_eq(file_byte(16 * 512), 0x10 + 16);
	cr_expect_eq(file_byte(20 * 512 + 7), 0);

	s[0] = (struct virtio_blk_discard_write_zeroes){ .sector = 30, .num_sectors = 2 };
	zero_req(&c, VIRTIO_BLK_T_WRITE_ZEROES, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(file_byte(30 * 512), 0);
	cr_expect_eq(file_byte(32 * 512 - 1), 0);
	cr_expect_eq(file_byte(32 * 512), 0x10 + 32);
	s[0].sector = 40;
	s[0].flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	zero_req(&c, VIRTIO_BLK_T_WRITE_ZEROES, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	cr_expect_eq(file_byte(41 * 512 + 3), 0);

	/* UNMAP on a DISCARD, and unknown flags: UNSUPP. */
	zero_req(&c, VIRTIO_BLK_T_DISCARD, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_UNSUPP);
	s[0].flags = 2;
	zero_req(&c, VIRTIO_BLK_T_WRITE_ZEROES, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_UNSUPP);
	/* Out of range, too many segments, none, a partial one: IOERR. */
	s[0] = (struct virtio_blk_discard_write_zeroes){ .sector = SECTORS - 1, .num_sectors = 2 };
	zero_req(&c, VIRTIO_BLK_T_WRITE_ZEROES, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	s[0] = (struct virtio_blk_discard_write_zeroes){ .sector = UINT64_MAX, .num_sectors = 2 };
	zero_req(&c, VIRTIO_BLK_T_DISCARD, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	memset(s, 0, sizeof(s));
	zero_req(&c, VIRTIO_BLK_T_DISCARD, s, VHU_BLK_MAX_SEGS + 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	zero_req(&c, VIRTIO_BLK_T_DISCARD, s, 0);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	chain(&c, VIRTIO_BLK_T_DISCARD, 0);
	add(&c, s, 10, false);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	close_image();
}

Test(vhost_blk, read_only)
{
	open_image(true);
	cr_expect(vhu_blk_features(&blk) & (1ull << VIRTIO_BLK_F_RO));
	struct chain c;
	static uint8_t buf[VHU_BLK_SECTOR];
	chain(&c, VIRTIO_BLK_T_OUT, 0);
	add(&c, buf, sizeof(buf), false);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	struct virtio_blk_discard_write_zeroes s = { .sector = 0, .num_sectors = 1 };
	zero_req(&c, VIRTIO_BLK_T_DISCARD, &s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	zero_req(&c, VIRTIO_BLK_T_WRITE_ZEROES, &s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_IOERR);
	cr_expect_eq(file_byte(0), 0x10, "image unchanged");
	chain(&c, VIRTIO_BLK_T_IN, 0);
	add(&c, buf, sizeof(buf), true);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	chain(&c, VIRTIO_BLK_T_FLUSH, 0);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	close_image();
}

Test(vhost_blk, features_and_config)
{
	open_image(false);
	uint64_t f = vhu_blk_features(&blk);
	cr_expect(f & (1ull << VIRTIO_F_VERSION_1));
	cr_expect(f & (1ull << VIRTIO_BLK_F_FLUSH));
	cr_expect_not(f & (1ull << VIRTIO_BLK_F_RO));
	cr_expect_not(f & (1ull << 28 /* INDIRECT_DESC */));
	struct virtio_blk_config cfg;
	vhu_blk_config(&blk, &cfg);
	cr_expect_eq(cfg.capacity, SECTORS);
	cr_expect_eq(cfg.blk_size, 512);
	cr_expect_gt(cfg.seg_max, 0);
	cr_expect_gt(cfg.max_discard_seg, 0);
	cr_expect_gt(cfg.max_write_zeroes_sectors, 0);
	close_image();
	struct hatch_err e = { 0 };
	cr_expect_eq(vhu_blk_open(&blk, "/nonexistent/image", false, &e), -1);
	cr_expect(strstr(e.msg, "/nonexistent/image"), "%s", e.msg);
	cr_expect_eq(vhu_blk_open(&blk, "/dev/null", false, &e), -1, "a char device");
}
