/* test_vhost_mem.c - the backend's map of the frontend's memory
 * (vhost/mem.c): regions from memfds, translation at the edges, overflow,
 * ranges straddling two regions, refused regions. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchery/cleanup.h"
#include "mem.h"

TestSuite(vhost_mem, .timeout = 10);

static int memfd(size_t len)
{
	int fd = memfd_create("vhost-mem-test", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)len), 0);
	return fd;
}

#define MB (1024u * 1024u)

/* Two adjacent regions, gpa [0, 1M) and [1M, 2M), from one memfd at
 * offsets 0 and 1M; uvas far apart. */
static void two_regions(struct vhu_mem *mem, int *fdp)
{
	int fd = memfd(2 * MB);
	vhu_mem_init(mem);
	struct vhu_mem_table t = { .nregions = 2 };
	t.regions[0] = (struct vhu_mem_region){ 0, MB, 0x7f0000000000ull, 0 };
	t.regions[1] = (struct vhu_mem_region){ MB, MB, 0x7f1000000000ull, MB };
	int fds[2] = { fd, fd };
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_mem_replace(mem, &t, fds, &e), 0, "%s", e.msg);
	*fdp = fd;
}

Test(vhost_mem, translate_edges)
{
	struct vhu_mem mem;
	_cleanup_close_ int fd = -1;
	two_regions(&mem, &fd);
	uint8_t *a = vhu_mem_translate(&mem, 0, 1);
	cr_assert_not_null(a);
	uint8_t *b = vhu_mem_translate(&mem, MB, 1);
	cr_assert_not_null(b);
	/* Same file, so the second region shows the first's offset MB. */
	a[MB - 1] = 0x5a;
	cr_expect_eq(*(uint8_t *)vhu_mem_translate(&mem, MB - 1, 1), 0x5a);
	cr_expect_not_null(vhu_mem_translate(&mem, 0, MB), "a whole region");
	cr_expect_not_null(vhu_mem_translate(&mem, MB, MB));
	cr_expect_not_null(vhu_mem_translate(&mem, 2 * MB - 1, 1), "last byte");
	cr_expect_null(vhu_mem_translate(&mem, 2 * MB, 1), "one past the end");
	cr_expect_null(vhu_mem_translate(&mem, 2 * MB - 1, 2), "runs off the end");
	cr_expect_not_null(vhu_mem_translate(&mem, 2 * MB - 1, 0), "len 0 inside");
	cr_expect_null(vhu_mem_translate(&mem, 2 * MB, 0), "len 0 outside");
	vhu_mem_clear(&mem);
	cr_expect_null(vhu_mem_translate(&mem, 0, 1), "nothing after clear");
}

Test(vhost_mem, straddling_two_regions_refused)
{
	struct vhu_mem mem;
	_cleanup_close_ int fd = -1;
	two_regions(&mem, &fd);
	cr_expect_null(vhu_mem_translate(&mem, MB - 1, 2),
		       "contiguous in gpa, but two regions: refused");
	cr_expect_null(vhu_mem_translate(&mem, 0, 2 * MB));
	vhu_mem_clear(&mem);
}

Test(vhost_mem, overflow_safe)
{
	struct vhu_mem mem;
	_cleanup_close_ int fd = -1;
	two_regions(&mem, &fd);
	cr_expect_null(vhu_mem_translate(&mem, 16, UINT64_MAX));
	cr_expect_null(vhu_mem_translate(&mem, UINT64_MAX, 2));
	cr_expect_null(vhu_mem_translate(&mem, UINT64_MAX - 1, UINT64_MAX));
	cr_expect_null(vhu_mem_translate(&mem, MB + 8, UINT64_MAX - 4));
	cr_expect_null(vhu_mem_uva_translate(&mem, 0x7f0000000010ull, UINT64_MAX));
	cr_expect_null(vhu_mem_uva_translate(&mem, UINT64_MAX, 1));
	vhu_mem_clear(&mem);
}

Test(vhost_mem, uva_translation)
{
	struct vhu_mem mem;
	_cleanup_close_ int fd = -1;
	two_regions(&mem, &fd);
	uint64_t gpa = 0;
	cr_expect_eq(vhu_mem_uva_to_gpa(&mem, 0x7f1000000100ull, 16, &gpa), 0);
	cr_expect_eq(gpa, MB + 0x100);
	cr_expect_eq(vhu_mem_uva_translate(&mem, 0x7f1000000100ull, 16),
		     vhu_mem_translate(&mem, MB + 0x100, 16));
	cr_expect_eq(vhu_mem_uva_to_gpa(&mem, 0x7f0000000000ull + MB - 8, 16, &gpa), -1,
		     "runs off the first region's uva range");
	cr_expect_null(vhu_mem_uva_translate(&mem, 0x100, 1), "a gpa is not a uva");
	vhu_mem_clear(&mem);
}

Test(vhost_mem, unaligned_mmap_offset)
{
	struct vhu_mem mem;
	vhu_mem_init(&mem);
	_cleanup_close_ int fd = memfd(8192);
	struct vhu_mem_region r = { 0x10000, 4096, 0x1000, 100 };
	struct hatch_err e = { 0 };
	cr_assert_eq(vhu_mem_add(&mem, &r, fd, &e), 0, "%s", e.msg);
	uint8_t *p = vhu_mem_translate(&mem, 0x10000, 1);
	*p = 0xa5;
	uint8_t byte = 0;
	cr_assert_eq(pread(fd, &byte, 1, 100), 1);
	cr_expect_eq(byte, 0xa5, "MAP_SHARED at the region's offset");
	vhu_mem_clear(&mem);
}

Test(vhost_mem, bad_regions_refused)
{
	struct vhu_mem mem;
	vhu_mem_init(&mem);
	_cleanup_close_ int fd = memfd(MB);
	struct hatch_err e = { 0 };
	struct vhu_mem_region bad[] = {
		{ 0, 0, 0, 0 },                         /* size 0 */
		{ UINT64_MAX - 10, 4096, 0, 0 },        /* gpa wraps */
		{ 0, 4096, UINT64_MAX - 10, 0 },        /* uva wraps */
		{ 0, 4096, 0, UINT64_MAX - 10 },        /* offset wraps */
		{ 0, 2 * MB, 0, 0 },                    /* past the file's end */
		{ 0, 4096, 0, MB },                     /* starts at the end */
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(bad); i++) {
		cr_expect_eq(vhu_mem_add(&mem, &bad[i], fd, &e), -1, "region %zu", i);
		cr_expect_eq(mem.n, 0);
	}
	struct vhu_mem_region ok = { 0, 8192, 0, 0 };
	cr_assert_eq(vhu_mem_add(&mem, &ok, fd, &e), 0, "%s", e.msg);
	struct vhu_mem_region overlap = { 4096, 8192, 0x100000, 0 };
	cr_expect_eq(vhu_mem_add(&mem, &overlap, fd, &e), -1);
	cr_expect(strstr(e.msg, "overlaps"), "%s", e.msg);
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	struct vhu_mem_region r2 = { MB, 4096, 0x200000, 0 };
	cr_expect_eq(vhu_mem_add(&mem, &r2, pfd[0], &e), -1, "a pipe is not memory");
	close(pfd[0]);
	close(pfd[1]);
	cr_expect_eq(mem.n, 1);
	vhu_mem_clear(&mem);
}

Test(vhost_mem, slots_full_and_remove)
{
	struct vhu_mem mem;
	vhu_mem_init(&mem);
	_cleanup_close_ int fd = memfd(4096);
	struct hatch_err e = { 0 };
	for (unsigned i = 0; i < VHU_MEM_MAX_REGIONS; i++) {
		struct vhu_mem_region r = { 0x10000ull * i, 4096, 0x1000000ull + 0x10000ull * i, 0 };
		cr_assert_eq(vhu_mem_add(&mem, &r, fd, &e), 0, "%s", e.msg);
	}
	struct vhu_mem_region more = { 0x100000000ull, 4096, 0, 0 };
	cr_expect_eq(vhu_mem_add(&mem, &more, fd, &e), -1);
	struct vhu_mem_region r3 = { 0x30000, 4096, 0x1030000, 12345 /* ignored */ };
	cr_expect_eq(vhu_mem_remove(&mem, &r3, &e), 0, "%s", e.msg);
	cr_expect_null(vhu_mem_translate(&mem, 0x30000, 1));
	cr_expect_not_null(vhu_mem_translate(&mem, 0x70000, 1), "the others stay");
	cr_expect_eq(vhu_mem_remove(&mem, &r3, &e), -1, "already gone");
	r3.size = 8192;
	cr_expect_eq(vhu_mem_remove(&mem, &(struct vhu_mem_region){ 0x40000, 8192, 0x1040000, 0 }, &e), -1,
		     "size must match");
	cr_expect_eq(vhu_mem_add(&mem, &more, fd, &e), 0, "a slot is free again: %s", e.msg);
	vhu_mem_clear(&mem);
}

Test(vhost_mem, replace_is_all_or_nothing)
{
	struct vhu_mem mem;
	_cleanup_close_ int fd = -1;
	two_regions(&mem, &fd);
	struct vhu_mem_table t = { .nregions = 2 };
	t.regions[0] = (struct vhu_mem_region){ 0x100000000ull, 4096, 0, 0 };
	t.regions[1] = (struct vhu_mem_region){ 0x100000000ull, 4096, 0x10000, 0 }; /* overlap */
	int fds[2] = { fd, fd };
	struct hatch_err e = { 0 };
	cr_expect_eq(vhu_mem_replace(&mem, &t, fds, &e), -1);
	cr_expect(strstr(e.msg, "region 1"), "%s", e.msg);
	cr_expect_not_null(vhu_mem_translate(&mem, 0, 1), "old table kept");
	cr_expect_null(vhu_mem_translate(&mem, 0x100000000ull, 1));
	vhu_mem_clear(&mem);
}
