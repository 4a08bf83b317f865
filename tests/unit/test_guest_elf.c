/* The guest ELF loader's checks (vmp_guest_elf_parse): a guest ELF is
 * untrusted input. Pure: no KVM. Each case corrupts one field of the real
 * default guest and expects a refusal that names the problem; then random
 * corruption must never crash (run it under ASan). */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/guest_elf.h"

static uint8_t *orig;
static size_t orig_len;

static void setup(void)
{
	int fd = open(HATCH_DEFAULT_GUEST, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s: %s", HATCH_DEFAULT_GUEST, strerror(errno));
	struct stat st;
	fstat(fd, &st);
	orig_len = (size_t)st.st_size;
	orig = malloc(orig_len);
	cr_assert_eq(read(fd, orig, orig_len), (ssize_t)orig_len);
	close(fd);
}

static void teardown(void)
{
	free(orig);
}

TestSuite(guest_elf, .init = setup, .fini = teardown);

static Elf64_Ehdr *eh(uint8_t *b) { return (Elf64_Ehdr *)b; }
static Elf64_Phdr *ph(uint8_t *b, int i) { return (Elf64_Phdr *)(b + eh(b)->e_phoff) + i; }

static int first_load(uint8_t *b)
{
	for (int i = 0; i < eh(b)->e_phnum; i++)
		if (ph(b, i)->p_type == PT_LOAD)
			return i;
	return -1;
}

static void expect_refused(uint8_t *b, size_t len, const char *needle)
{
	struct vmp_guest_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_guest_elf_parse(b, len, &img, &err), -1, "accepted; wanted \"%s\"", needle);
	cr_assert(strstr(err.msg, needle), "message \"%s\" lacks \"%s\"", err.msg, needle);
}

Test(guest_elf, accepts_the_default_guest)
{
	struct vmp_guest_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_guest_elf_parse(orig, orig_len, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(img.entry, HATCH_IMAGE_BASE);
	cr_assert_geq(img.nsegs, 2);
}

#define CASE(name, needle, ...)                                                \
	Test(guest_elf, name)                                                  \
	{                                                                      \
		uint8_t *b = malloc(orig_len);                                 \
		memcpy(b, orig, orig_len);                                     \
		size_t len = orig_len;                                         \
		int l = first_load(b);                                         \
		(void)l;                                                       \
		__VA_ARGS__;                                                   \
		expect_refused(b, len, needle);                                \
		free(b);                                                       \
	}

CASE(empty, "shorter than an ELF header", len = 0)
CASE(truncated_header, "shorter than an ELF header", len = 63)
CASE(bad_magic, "bad magic", b[1] = 'X')
CASE(elf32, "ELF64", b[EI_CLASS] = ELFCLASS32)
CASE(big_endian, "little-endian", b[EI_DATA] = ELFDATA2MSB)
CASE(wrong_machine, "not x86-64", eh(b)->e_machine = EM_AARCH64)
CASE(pie, "ET_EXEC", eh(b)->e_type = ET_DYN)
CASE(phentsize, "e_phentsize", eh(b)->e_phentsize = 32)
CASE(no_phdrs, "program headers", eh(b)->e_phnum = 0)
CASE(too_many_phdrs, "program headers", eh(b)->e_phnum = 65535)
CASE(phoff_past_end, "program headers outside the file", eh(b)->e_phoff = orig_len)
CASE(phoff_overflow, "program headers outside the file", eh(b)->e_phoff = ~0ull - 8)
CASE(cut_before_segment_end, "outside the file", len = ph(b, l)->p_offset + ph(b, l)->p_filesz - 1)
CASE(offset_overflow, "outside the file", ph(b, l)->p_offset = ~0ull - 1)
CASE(filesz_gt_memsz, "p_filesz", ph(b, l)->p_filesz = ph(b, l)->p_memsz + 1)
CASE(below_window, "outside the image window", ph(b, l)->p_vaddr = 0x1000)
CASE(over_runtime_tables, "outside the image window", ph(b, l)->p_vaddr = 0; eh(b)->e_entry = 0)
CASE(past_window, "outside the image window", ph(b, l)->p_vaddr = HATCH_IMAGE_END - 4096; ph(b, l)->p_memsz = 8192)
CASE(vaddr_overflow, "outside the image window", ph(b, l)->p_memsz = ~0ull - 4096)
CASE(write_and_exec, "writable and executable", ph(b, l)->p_flags = PF_R | PF_W | PF_X)
CASE(shared_page, "share a page", ph(b, l + 1)->p_vaddr = ph(b, l)->p_vaddr + 16)
CASE(entry_outside, "entry point", eh(b)->e_entry = 0x100)
CASE(entry_in_data, "entry point", eh(b)->e_entry = ph(b, l + 1)->p_vaddr)
CASE(no_load, "no PT_LOAD", for (int i = 0; i < eh(b)->e_phnum; i++) ph(b, i)->p_type = PT_NOTE)
CASE(interp, "dynamic", ph(b, l)->p_type = PT_INTERP)

Test(guest_elf, random_corruption_never_crashes)
{
	uint64_t r = 12345;
	uint8_t *b = malloc(orig_len);
	unsigned accepted = 0;
	for (int i = 0; i < 20000; i++) {
		memcpy(b, orig, orig_len);
		int flips = 1 + (int)(r % 8);
		for (int f = 0; f < flips; f++) {
			r ^= r << 13;
			r ^= r >> 7;
			r ^= r << 17;
			/* Mostly the headers, where the checks are. */
			size_t at = (r >> 8) % (r & 1 ? 512 : orig_len);
			b[at] = (uint8_t)(r >> 32);
		}
		struct vmp_guest_image img;
		struct hatch_err err = { 0 };
		if (vmp_guest_elf_parse(b, orig_len - (r % 3 == 0 ? (r >> 20) % orig_len : 0), &img, &err) == 0) {
			accepted++;
			/* Whatever passed must be inside the window. */
			for (unsigned s = 0; s < img.nsegs; s++) {
				cr_assert_geq(img.seg[s].vaddr, HATCH_IMAGE_BASE);
				cr_assert_leq(img.seg[s].vaddr + img.seg[s].memsz, HATCH_IMAGE_END);
				cr_assert_leq(img.seg[s].offset + img.seg[s].filesz, orig_len);
			}
		}
	}
	cr_log_info("random corruption: %u of 20000 still accepted (harmless bytes)", accepted);
	free(b);
}
