/* The bzImage checks (vmp_bzimage_parse): a kernel image is untrusted
 * input. Pure: no KVM. Synthetic headers, each wrong in one field, must be
 * refused with a message naming it; random corruption must never crash
 * (run it under ASan). The real Debian vmlinuz, when scripts/vm has
 * unpacked it, must parse (suite bzimage_debian, its own ctest entry,
 * skipped loudly without it). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linux/bzimage.h"
#include "testing.h"

#define IMG_LEN (64u << 10)
#define SECTS 4

static void w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A header shaped like Debian 12's kernel's, over IMG_LEN bytes. */
static uint8_t *synth(void)
{
	uint8_t *b = calloc(1, IMG_LEN);
	b[VMP_BZ_SETUP_SECTS] = SECTS;
	uint32_t kernel = IMG_LEN - (SECTS + 1) * 512;
	w32(b + VMP_BZ_SYSSIZE, kernel / 16);
	w16(b + VMP_BZ_BOOT_FLAG, 0xaa55);
	b[VMP_BZ_JUMP] = 0xeb;
	b[VMP_BZ_JUMP + 1] = 0x6a; /* header to 0x26c, as protocol 2.15's */
	memcpy(b + VMP_BZ_HEADER, "HdrS", 4);
	w16(b + VMP_BZ_VERSION, 0x020f);
	b[VMP_BZ_LOADFLAGS] = VMP_BZ_LOADED_HIGH;
	w32(b + VMP_BZ_CODE32_START, 0x100000);
	w32(b + VMP_BZ_INITRD_ADDR_MAX, 0x7fffffff);
	w32(b + VMP_BZ_KERNEL_ALIGNMENT, 0x200000);
	b[VMP_BZ_RELOCATABLE] = 1;
	w16(b + VMP_BZ_XLOADFLAGS, 0x7f);
	w32(b + VMP_BZ_CMDLINE_SIZE, 0x7ff);
	w64(b + VMP_BZ_PREF_ADDRESS, 0x1000000);
	w32(b + VMP_BZ_INIT_SIZE, 0x3f98000);
	return b;
}

static void refused(const uint8_t *b, size_t len, const char *what)
{
	struct vmp_bzimage bz;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_bzimage_parse(b, len, &bz, &err), -1, "accepted; expected: %s", what);
	cr_assert(strstr(err.msg, what), "message \"%s\" does not name \"%s\"", err.msg, what);
}

Test(bzimage, synthetic_parses)
{
	uint8_t *b = synth();
	struct vmp_bzimage bz;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_bzimage_parse(b, IMG_LEN, &bz, &err), 0, "%s", err.msg);
	cr_assert_eq(bz.version, 0x020f);
	cr_assert_eq(bz.setup_size, (SECTS + 1) * 512);
	cr_assert_eq(bz.kernel_offset, bz.setup_size);
	cr_assert_eq(bz.kernel_size, IMG_LEN - bz.setup_size);
	cr_assert_eq(bz.hdr_end, 0x26c);
	cr_assert_eq(bz.kernel_alignment, 0x200000);
	cr_assert_eq(bz.init_size, 0x3f98000);
	cr_assert_eq(bz.initrd_addr_max, 0x7fffffff);
	cr_assert_eq(bz.cmdline_size, 0x7ff);
	cr_assert_eq(bz.pref_address, 0x1000000);
	cr_assert(bz.relocatable);
	free(b);
}

Test(bzimage, setup_sects_zero_means_four)
{
	uint8_t *b = synth();
	b[VMP_BZ_SETUP_SECTS] = 0;
	struct vmp_bzimage bz;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_bzimage_parse(b, IMG_LEN, &bz, &err), 0, "%s", err.msg);
	cr_assert_eq(bz.setup_size, 5 * 512);
	free(b);
}

Test(bzimage, truncated)
{
	uint8_t *b = synth();
	refused(b, 0x200, "too short");
	refused(b, 0, "too short");
	refused(NULL, 0, "too short");
	/* Long enough for the header but not for the setup code it claims. */
	refused(b, 0x800, "beyond the file");
	free(b);
}

Test(bzimage, bad_magic)
{
	uint8_t *b = synth();
	memcpy(b + VMP_BZ_HEADER, "HdrZ", 4);
	refused(b, IMG_LEN, "HdrS");
	free(b);
	b = synth();
	w16(b + VMP_BZ_BOOT_FLAG, 0);
	refused(b, IMG_LEN, "boot_flag");
	free(b);
}

Test(bzimage, old_protocol)
{
	uint8_t *b = synth();
	w16(b + VMP_BZ_VERSION, 0x020b);
	refused(b, IMG_LEN, "2.11");
	free(b);
}

Test(bzimage, no_64bit_entry)
{
	uint8_t *b = synth();
	w16(b + VMP_BZ_XLOADFLAGS, 0x7e);
	refused(b, IMG_LEN, "XLF_KERNEL_64");
	free(b);
}

Test(bzimage, not_loaded_high)
{
	uint8_t *b = synth();
	b[VMP_BZ_LOADFLAGS] = 0;
	refused(b, IMG_LEN, "LOADED_HIGH");
	free(b);
}

Test(bzimage, setup_sects_beyond_file)
{
	uint8_t *b = synth();
	b[VMP_BZ_SETUP_SECTS] = 200;
	refused(b, IMG_LEN, "setup_sects 200");
	free(b);
}

Test(bzimage, header_length)
{
	uint8_t *b = synth();
	b[VMP_BZ_JUMP + 1] = 0x10; /* ends before init_size */
	refused(b, IMG_LEN, "setup header ends");
	b[VMP_BZ_JUMP + 1] = 0x7f; /* 0x281: fine */
	struct vmp_bzimage bz;
	cr_assert_eq(vmp_bzimage_parse(b, IMG_LEN, &bz, NULL), 0);
	free(b);
}

Test(bzimage, syssize)
{
	uint8_t *b = synth();
	w32(b + VMP_BZ_SYSSIZE, IMG_LEN / 16);
	refused(b, IMG_LEN, "syssize");
	w32(b + VMP_BZ_SYSSIZE, 0);
	refused(b, IMG_LEN, "syssize");
	free(b);
}

Test(bzimage, alignment_init_size_cmdline_initrd_pref)
{
	uint8_t *b = synth();
	w32(b + VMP_BZ_KERNEL_ALIGNMENT, 0x300000);
	refused(b, IMG_LEN, "kernel_alignment");
	free(b);
	b = synth();
	w32(b + VMP_BZ_INIT_SIZE, 0x1000);
	refused(b, IMG_LEN, "init_size");
	free(b);
	b = synth();
	w32(b + VMP_BZ_CMDLINE_SIZE, 0);
	refused(b, IMG_LEN, "cmdline_size");
	free(b);
	b = synth();
	w32(b + VMP_BZ_INITRD_ADDR_MAX, 0xffff);
	refused(b, IMG_LEN, "initrd_addr_max");
	free(b);
	b = synth();
	w64(b + VMP_BZ_PREF_ADDRESS, 0x1001000);
	refused(b, IMG_LEN, "pref_address");
	free(b);
}

/* Random bytes over the header: refused or accepted, never a crash or a
 * read outside the buffer (ASan), and anything accepted is consistent. */
Test(bzimage, random_corruption)
{
	srand(12345);
	for (int n = 0; n < 20000; n++) {
		uint8_t *b = synth();
		int k = 1 + rand() % 4;
		for (int i = 0; i < k; i++)
			b[0x1f0 + rand() % 0x80] = (uint8_t)rand();
		size_t len = rand() % 8 ? IMG_LEN : (size_t)(rand() % IMG_LEN);
		struct vmp_bzimage bz;
		if (vmp_bzimage_parse(b, len, &bz, NULL) == 0) {
			cr_assert_leq((size_t)bz.kernel_offset + bz.kernel_size, len);
			cr_assert_leq(bz.hdr_end, bz.setup_size);
			cr_assert_leq(bz.syssize_bytes, bz.kernel_size);
		}
		free(b);
	}
}

Test(bzimage_debian, real_vmlinuz)
{
	const char *home = getenv("HOME");
	char pat[512];
	snprintf(pat, sizeof(pat), "%s/.cache/hatchery/vm/linux-image-*/boot/vmlinuz-*",
		 home ? home : "/root");
	glob_t g;
	if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc == 0)
		t_skip("no Debian kernel at %s (scripts/vm fetches it)\n", pat);
	const char *path = g.gl_pathv[g.gl_pathc - 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	struct vmp_bzimage bz;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_bzimage_parse(b, (size_t)st.st_size, &bz, &err), 0, "%s: %s", path,
		     err.msg);
	cr_assert_geq(bz.version, 0x020c);
	cr_assert(bz.xloadflags & VMP_BZ_XLF_KERNEL_64);
	cr_assert(bz.relocatable);
	cr_assert_eq(bz.kernel_offset + bz.kernel_size, (uint64_t)st.st_size);
	cr_assert_eq(bz.pref_address % bz.kernel_alignment, 0);
	cr_assert_gt(bz.init_size, bz.syssize_bytes);
	free(b);
	globfree(&g);
}
