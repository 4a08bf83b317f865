/* test_vhost_blk.c - virtio-blk requests on a temporary image file
 * (vhost/blk.c): each request type's effect on the file and its status
 * byte, chains of the wrong shape, ranges past the end, read-only. The
 * chains are built by hand (struct vmp_vq_elem over local buffers): the
 * ring is test_vhost_vring's business. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* ---- overlay mode ---------------------------------------------------- */

/* An overlay over `path` (made by open_image, whose struct is then
 * replaced): the base read-only, the layer an O_TMPFILE in /tmp. */
static void open_overlay(struct vhu_blk *o)
{
	struct hatch_err e = { 0 };
	int base = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(base, 0);
	int layer = vhu_blk_layer_tmpfile("/tmp", &e);
	cr_assert_geq(layer, 0, "%s", e.msg);
	cr_assert_eq(vhu_blk_open_fd(o, base, layer, false, "ovl", &e), 0, "%s", e.msg);
}

static void overlay_image(void)
{
	open_image(false);
	vhu_blk_close(&blk); /* the file stays: it is the base */
	open_overlay(&blk);
}

static uint8_t out_sectors(struct vhu_blk *o, uint64_t sector, uint8_t fill, size_t n)
{
	static uint8_t data[8 * VHU_BLK_SECTOR];
	cr_assert_leq(n, 8);
	memset(data, fill, n * VHU_BLK_SECTOR);
	struct chain c;
	chain(&c, VIRTIO_BLK_T_OUT, sector);
	add(&c, data, n * VHU_BLK_SECTOR, false);
	add(&c, &c.status, 1, true);
	vhu_blk_request(o, &c.e);
	return c.status;
}

/* The first byte of each of n sectors from `sector` on, as the guest
 * reads them (one IN request). */
static void in_sectors(struct vhu_blk *o, uint64_t sector, size_t n, uint8_t *first)
{
	static uint8_t data[SECTORS * VHU_BLK_SECTOR];
	struct chain c;
	chain(&c, VIRTIO_BLK_T_IN, sector);
	add(&c, data, n * VHU_BLK_SECTOR, true);
	add(&c, &c.status, 1, true);
	vhu_blk_request(o, &c.e);
	cr_assert_eq(c.status, VIRTIO_BLK_S_OK);
	for (size_t i = 0; i < n; i++) {
		first[i] = data[i * VHU_BLK_SECTOR];
		/* every byte of the sector is the same in these tests */
		cr_assert_eq(data[i * VHU_BLK_SECTOR + VHU_BLK_SECTOR - 1], first[i],
			     "sector %zu is not uniform", (size_t)sector + i);
	}
}

Test(vhost_blk, overlay_writes_to_the_layer_only)
{
	overlay_image();
	cr_expect_eq(blk.capacity, SECTORS);
	cr_expect_not(vhu_blk_features(&blk) & (1ull << VIRTIO_BLK_F_RO));
	cr_expect_eq(out_sectors(&blk, 3, 0xa1, 1), VIRTIO_BLK_S_OK);
	uint8_t got[SECTORS];
	in_sectors(&blk, 0, SECTORS, got);
	for (unsigned s = 0; s < SECTORS; s++)
		cr_expect_eq(got[s], s == 3 ? 0xa1 : 0x10 + s, "sector %u", s);
	cr_expect_eq(file_byte(3 * 512), 0x13, "the base is unchanged");
	/* Sparse: one block copied up, the rest a hole, at the disk's size. */
	struct stat st;
	cr_assert_eq(fstat(blk.layer, &st), 0);
	cr_expect_eq(st.st_size, SECTORS * VHU_BLK_SECTOR);
	cr_expect_leq(st.st_blocks * 512, 4 * VHU_BLK_OVL_BLOCK, "%lld bytes allocated",
		      (long long)st.st_blocks * 512);
	cr_expect_eq(st.st_nlink, 0, "an unlinked layer");
	struct chain c;
	chain(&c, VIRTIO_BLK_T_FLUSH, 0);
	run(&c);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	close_image();
}

/* Sectors are 512 bytes, blocks 4 KiB: a write of a few sectors inside
 * or across blocks keeps the base's data around it. */
Test(vhost_blk, overlay_partial_blocks)
{
	overlay_image();
	uint8_t got[SECTORS];
	cr_expect_eq(out_sectors(&blk, 9, 0xb1, 1), VIRTIO_BLK_S_OK);   /* in block 1 */
	cr_expect_eq(out_sectors(&blk, 22, 0xb2, 4), VIRTIO_BLK_S_OK);  /* blocks 2 and 3 */
	cr_expect_eq(out_sectors(&blk, 10, 0xb3, 1), VIRTIO_BLK_S_OK);  /* block 1 again */
	cr_expect_eq(out_sectors(&blk, 32, 0xb4, 8), VIRTIO_BLK_S_OK);  /* all of block 4 */
	cr_expect_eq(out_sectors(&blk, SECTORS - 1, 0xb5, 1), VIRTIO_BLK_S_OK);
	in_sectors(&blk, 0, SECTORS, got);
	for (unsigned s = 0; s < SECTORS; s++) {
		uint8_t want = 0x10 + s;
		if (s == 9) want = 0xb1;
		if (s == 10) want = 0xb3;
		if (s >= 22 && s < 26) want = 0xb2;
		if (s >= 32 && s < 40) want = 0xb4;
		if (s == SECTORS - 1) want = 0xb5;
		cr_expect_eq(got[s], want, "sector %u: %#x, expected %#x", s, got[s], want);
	}
	/* Reads that start and end inside blocks, across layer and base. */
	in_sectors(&blk, 21, 6, got);
	cr_expect_eq(got[0], 0x10 + 21);
	cr_expect_eq(got[1], 0xb2);
	cr_expect_eq(got[5], 0x10 + 26);
	for (unsigned s = 0; s < SECTORS; s++)
		cr_expect_eq(file_byte(s * 512 + 100), 0x10 + s, "base sector %u", s);
	close_image();
}

/* DISCARD and WRITE_ZEROES: zeros for good, never the base's data. */
Test(vhost_blk, overlay_discard_reads_zeros)
{
	overlay_image();
	struct chain c;
	struct virtio_blk_discard_write_zeroes s[3] = {
		{ .sector = 8, .num_sectors = 8 },  /* block 1, whole */
		{ .sector = 20, .num_sectors = 1 }, /* part of block 2 */
		{ .sector = 30, .num_sectors = 4 }, /* across blocks 3 and 4 */
	};
	zero_req(&c, VIRTIO_BLK_T_DISCARD, s, 3);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	s[0] = (struct virtio_blk_discard_write_zeroes){
		.sector = 48, .num_sectors = 9, .flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP };
	zero_req(&c, VIRTIO_BLK_T_WRITE_ZEROES, s, 1);
	cr_expect_eq(c.status, VIRTIO_BLK_S_OK);
	/* A write into a discarded block: the rest of it stays zero. */
	cr_expect_eq(out_sectors(&blk, 12, 0xc1, 1), VIRTIO_BLK_S_OK);
	uint8_t got[SECTORS];
	in_sectors(&blk, 0, SECTORS, got);
	for (unsigned i = 0; i < SECTORS; i++) {
		bool zero = (i >= 8 && i < 16) || i == 20 || (i >= 30 && i < 34) ||
			    (i >= 48 && i < 57);
		uint8_t want = i == 12 ? 0xc1 : zero ? 0 : 0x10 + i;
		cr_expect_eq(got[i], want, "sector %u: %#x, expected %#x", i, got[i], want);
	}
	cr_expect_eq(file_byte(8 * 512), 0x18, "the base is unchanged");
	cr_expect_eq(file_byte(20 * 512), 0x10 + 20);
	close_image();
}

Test(vhost_blk, two_overlays_over_one_base)
{
	overlay_image();
	struct vhu_blk other;
	open_overlay(&other);
	cr_expect_eq(out_sectors(&blk, 5, 0xd1, 1), VIRTIO_BLK_S_OK);
	cr_expect_eq(out_sectors(&other, 5, 0xd2, 2), VIRTIO_BLK_S_OK);
	uint8_t a[8], b[8];
	in_sectors(&blk, 4, 3, a);
	in_sectors(&other, 4, 3, b);
	cr_expect_eq(a[0], 0x14);
	cr_expect_eq(a[1], 0xd1);
	cr_expect_eq(a[2], 0x16, "not the other overlay's write");
	cr_expect_eq(b[0], 0x14);
	cr_expect_eq(b[1], 0xd2);
	cr_expect_eq(b[2], 0xd2);
	cr_expect_eq(file_byte(5 * 512), 0x15);
	vhu_blk_close(&other);
	close_image();
}

Test(vhost_blk, overlay_refusals)
{
	open_image(false);
	struct hatch_err e = { 0 };
	struct vhu_blk o;
	/* A layer that is not empty would be somebody's data. */
	int base = open(path, O_RDONLY | O_CLOEXEC);
	int notempty = open(path, O_RDWR | O_CLOEXEC);
	cr_expect_eq(vhu_blk_open_fd(&o, base, notempty, false, NULL, &e), -1);
	cr_expect(strstr(e.msg, "empty"), "%s", e.msg);
	/* Read-only and an overlay: one or the other. */
	base = open(path, O_RDONLY | O_CLOEXEC);
	int layer = vhu_blk_layer_tmpfile("/tmp", &e);
	cr_assert_geq(layer, 0);
	cr_expect_eq(vhu_blk_open_fd(&o, base, layer, true, NULL, &e), -1);
	cr_expect_eq(vhu_blk_layer_tmpfile("/nonexistent", &e), -1);
	cr_expect(strstr(e.msg, "/nonexistent"), "%s", e.msg);
	/* Both fds were taken, also on failure (no leak to count here, but
	 * closing them again must fail). */
	cr_expect_eq(fcntl(base, F_GETFD), -1);
	cr_expect_eq(fcntl(layer, F_GETFD), -1);
	close_image();
}
