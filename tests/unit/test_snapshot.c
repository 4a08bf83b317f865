/* test_snapshot.c - the snapshot file format (snapshot/), without KVM.
 *
 * A synthetic snapshot is built from plain structs filled with a pattern;
 * it must round-trip exactly, store only non-zero pages, and every kind of
 * damage must be rejected with a message that names it.
 *
 * The byte offsets below (124, 72, 52, ...) are written out from the tables
 * in docs/snapshot.md on purpose, not taken from snapshot/layout.h: this
 * test checks that the code's layout is the documented one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchery/error.h"
#include "hatchery/v1/common.pb-c.h"
#include "snapshot.h"

TestSuite(snapshot, .timeout = 60);

#define NVCPUS 2
#define MEM (64u * 4096u)

struct fixture {
	struct snap_state st;
	struct snap_vcpu vcpu[NVCPUS];
	struct kvm_msr_entry msrs[NVCPUS][3];
	uint8_t xsave[NVCPUS][4096 + 64];
	uint8_t runtime[100];
	uint8_t *mem;
	struct snap_expect want;
};

static void fill(void *p, size_t n, unsigned seed)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	for (unsigned i = 0; i < NVCPUS; i++) {
		struct snap_vcpu *v = &f->vcpu[i];
		fill(&v->regs, sizeof(v->regs), 1 + i);
		fill(&v->sregs, sizeof(v->sregs), 2 + i);
		fill(&v->fpu, sizeof(v->fpu), 3 + i);
		fill(f->xsave[i], sizeof(f->xsave[i]), 4 + i);
		v->xsave = f->xsave[i];
		v->xsave_len = sizeof(f->xsave[i]);
		v->has_xcrs = i == 0; /* optional: present on one vCPU only */
		fill(&v->xcrs, sizeof(v->xcrs), 5 + i);
		for (unsigned k = 0; k < 3; k++)
			f->msrs[i][k] = (struct kvm_msr_entry){ .index = 0x10 + k, .data = k * 1000 + i };
		v->msrs = f->msrs[i];
		v->nmsrs = 3;
		fill(&v->lapic, sizeof(v->lapic), 6 + i);
		v->mp.mp_state = KVM_MP_STATE_RUNNABLE;
		fill(&v->events, sizeof(v->events), 7 + i);
		fill(&v->debugregs, sizeof(v->debugregs), 8 + i);
		v->tsc = (struct snap_tsc){ .tsc_khz = 2000000, .tsc = 123456789 + i };
	}
	fill(&f->st.vm, sizeof(f->st.vm), 9);
	f->st.vm.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	f->st.vm.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	f->st.vm.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	fill(f->runtime, sizeof(f->runtime), 10);
	f->mem = calloc(1, MEM);
	cr_assert_not_null(f->mem);
	/* Non-zero pages: 0, 1, 2 (one run), 10, 63 (the last) */
	unsigned pages[] = { 0, 1, 2, 10, 63 };
	for (unsigned i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		fill(f->mem + pages[i] * 4096u, 4096, 20 + pages[i]);
	f->mem[30 * 4096 + 4095] = 1; /* a page with one non-zero byte */

	memcpy(f->st.cpu.vendor, "GenuineIntel", 12);
	f->st.cpu.signature = 0x806f8;
	f->st.cpu.cpuid_hash = 0x1234567890abcdefull;
	f->st.mem_size = MEM;
	f->st.mem = f->mem;
	f->st.nvcpus = NVCPUS;
	f->st.vcpu = f->vcpu;
	f->st.runtime = f->runtime;
	f->st.runtime_len = sizeof(f->runtime);
	f->want = (struct snap_expect){ .mem_size = MEM, .nvcpus = NVCPUS, .cpu = f->st.cpu };
}

static uint8_t *encode(struct fixture *f, size_t *len)
{
	uint8_t *b = NULL;
	struct hatch_err err = { 0 };
	int r = snap_encode(&f->st, &b, len, &err);
	cr_assert_eq(r, 0, "snap_encode: %s", err.msg);
	return b;
}

static void expect_reject(const uint8_t *b, size_t len, uint64_t file_size,
			  const struct snap_expect *want, const char *needle)
{
	struct snap_image img;
	struct hatch_err err = { 0 };
	int r = snap_parse(b, len, file_size, want, &img, &err);
	cr_assert_eq(r, -1, "accepted a bad snapshot (wanted \"%s\")", needle);
	cr_assert_not_null(strstr(err.msg, needle), "message \"%s\" does not contain \"%s\"",
			   err.msg, needle);
	cr_assert_null(img.st.vcpu);
	cr_assert_null(img.ext);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void fix_header_crc(uint8_t *b)
{
	wr32(b + 124, snap_crc32c(0, b, 124));
}

/* The section header at file offset `off`: recompute its checksum. */
static void fix_section_crc(uint8_t *b, size_t off)
{
	uint64_t len = rd64(b + off + 8);
	wr32(b + off + 16, snap_crc32c(snap_crc32c(0, b + off, 16), b + off + 24, len));
}

/* Offset of the n-th section, and of the memory map section. */
static size_t section_at(const uint8_t *b, unsigned n)
{
	size_t off = 128;
	for (unsigned i = 0; i < n; i++)
		off += 24 + ((rd64(b + off + 8) + 7) & ~7ull);
	return off;
}

static size_t memmap_at(const uint8_t *b)
{
	return section_at(b, rd32(b + 52) - 1);
}

Test(snapshot, crc32c_known_answer)
{
	cr_assert_eq(snap_crc32c(0, "123456789", 9), 0xe3069283u);
	/* continuing over a split gives the same */
	uint32_t c = snap_crc32c(0, "1234", 4);
	cr_assert_eq(snap_crc32c(c, "56789", 5), 0xe3069283u);
	uint8_t big[1000];
	fill(big, sizeof(big), 3);
	cr_assert_eq(snap_crc32c(snap_crc32c(0, big, 333), big + 333, 667),
		     snap_crc32c(0, big, 1000));
}

Test(snapshot, round_trip)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse(b, len, len, &f.want, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(img.st.nvcpus, NVCPUS);
	cr_assert_eq(img.st.mem_size, MEM);
	cr_assert_eq(memcmp(&img.st.cpu, &f.st.cpu, sizeof(f.st.cpu)), 0);
	for (unsigned i = 0; i < NVCPUS; i++) {
		const struct snap_vcpu *a = &f.vcpu[i], *p = &img.st.vcpu[i];
		cr_assert_eq(memcmp(&a->regs, &p->regs, sizeof(a->regs)), 0);
		cr_assert_eq(memcmp(&a->sregs, &p->sregs, sizeof(a->sregs)), 0);
		cr_assert_eq(memcmp(&a->fpu, &p->fpu, sizeof(a->fpu)), 0);
		cr_assert_eq(p->xsave_len, a->xsave_len);
		cr_assert_eq(memcmp(a->xsave, p->xsave, a->xsave_len), 0);
		cr_assert_eq(p->has_xcrs, a->has_xcrs);
		if (a->has_xcrs)
			cr_assert_eq(memcmp(&a->xcrs, &p->xcrs, sizeof(a->xcrs)), 0);
		cr_assert_eq(p->nmsrs, 3);
		cr_assert_eq(memcmp(a->msrs, p->msrs, 3 * sizeof(*a->msrs)), 0);
		cr_assert_eq(memcmp(&a->lapic, &p->lapic, sizeof(a->lapic)), 0);
		cr_assert_eq(p->mp.mp_state, a->mp.mp_state);
		cr_assert_eq(memcmp(&a->events, &p->events, sizeof(a->events)), 0);
		cr_assert_eq(memcmp(&a->debugregs, &p->debugregs, sizeof(a->debugregs)), 0);
		cr_assert_eq(p->tsc.tsc, a->tsc.tsc);
		cr_assert_eq(p->tsc.tsc_khz, a->tsc.tsc_khz);
	}
	cr_assert_eq(memcmp(&img.st.vm, &f.st.vm, sizeof(f.st.vm)), 0);
	cr_assert_eq(img.st.runtime_len, sizeof(f.runtime));
	cr_assert_eq(memcmp(img.st.runtime, f.runtime, sizeof(f.runtime)), 0);
	cr_assert_null(img.st.devices);
	cr_assert_eq(snap_verify_memory(&img, b, len, &err), 0, "%s", err.msg);

	/* Rebuild guest RAM from the extents: must equal the original. */
	uint8_t *mem = calloc(1, MEM);
	for (uint32_t i = 0; i < img.nextents; i++)
		memcpy(mem + img.ext[i].gpa, b + img.ext[i].file_offset, img.ext[i].len);
	cr_assert_eq(memcmp(mem, f.mem, MEM), 0);
	free(mem);
	snap_image_free(&img);
	free(b);
	free(f.mem);
}

Test(snapshot, sparse_memory)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse(b, len, len, NULL, &img, &err), 0, "%s", err.msg);
	/* pages 0-2, 10, 30, 63 are non-zero: 6 pages in 4 extents */
	cr_assert_eq(img.mem_data_size, 6 * 4096);
	cr_assert_eq(img.nextents, 4);
	cr_assert_eq(img.ext[0].gpa, 0);
	cr_assert_eq(img.ext[0].len, 3 * 4096);
	cr_assert_eq(img.ext[1].gpa, 10 * 4096);
	cr_assert_eq(img.ext[2].gpa, 30 * 4096);
	cr_assert_eq(img.ext[3].gpa, 63 * 4096);
	cr_assert_eq(img.mem_offset % 4096, 0);
	cr_assert_eq(len, img.mem_offset + 6 * 4096);
	snap_image_free(&img);
	free(b);

	/* All-zero memory: no extents, no data. */
	memset(f.mem, 0, MEM);
	b = encode(&f, &len);
	cr_assert_eq(snap_parse(b, len, len, NULL, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(img.nextents, 0);
	cr_assert_eq(img.mem_data_size, 0);
	cr_assert_eq(len, img.mem_offset);
	snap_image_free(&img);
	free(b);
	free(f.mem);
}

Test(snapshot, write_fd_matches_encode)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	FILE *tf = tmpfile();
	cr_assert_not_null(tf);
	int fd = fileno(tf);
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_write_fd(fd, &f.st, &err), 0, "%s", err.msg);
	cr_assert_eq((size_t)lseek(fd, 0, SEEK_END), len);
	uint8_t *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(memcmp(m, b, len), 0);
	munmap(m, len);
	fclose(tf);
	free(b);
	free(f.mem);
}

Test(snapshot, truncated_at_every_section_boundary)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint32_t ns = rd32(b + 52);
	expect_reject(b, 0, 0, NULL, "truncated");
	expect_reject(b, 100, 100, NULL, "truncated");
	for (unsigned n = 0; n <= ns; n++) {
		size_t cut = section_at(b, n);
		expect_reject(b, cut, cut, NULL, "truncated");
		expect_reject(b, cut + 5, cut + 5, NULL, "truncated");
	}
	/* inside the memory data: the extent that runs past the end is named */
	size_t mem_off = rd64(b + 72);
	expect_reject(b, len - 4096, len - 4096, NULL, "truncated: memory extent 3 ends at");
	expect_reject(b, mem_off + 100, mem_off + 100, NULL, "truncated: memory extent 0");
	/* a buffer shorter than the sections, whatever the file size says */
	expect_reject(b, mem_off - 1, len, NULL, "truncated: sections end at");
	/* and trailing bytes */
	uint8_t *longer = calloc(1, len + 4096);
	memcpy(longer, b, len);
	expect_reject(longer, len + 4096, len + 4096, NULL, "trailing bytes");
	free(longer);
	free(b);
	free(f.mem);
}

Test(snapshot, bad_magic_version_and_header_bits)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint8_t *c = malloc(len);

	memcpy(c, b, len);
	c[0] = 'X';
	expect_reject(c, len, len, NULL, "bad magic");

	memcpy(c, b, len);
	wr32(c + 8, 2);
	fix_header_crc(c);
	expect_reject(c, len, len, NULL, "format version 2, this build reads version 1");

	/* every bit of the header after the version: the checksum catches it */
	for (unsigned bit = 12 * 8; bit < 128 * 8; bit++) {
		memcpy(c, b, len);
		c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		expect_reject(c, len, len, NULL, "header checksum mismatch");
	}
	/* a header with a good checksum but nonsense inside */
	memcpy(c, b, len);
	wr64(c + 72, rd64(b + 72) + 4096);
	fix_header_crc(c);
	expect_reject(c, len, len, NULL, "memory data at");
	memcpy(c, b, len);
	wr64(c + 64, ~0ull - 64);
	fix_header_crc(c);
	expect_reject(c, len, len, NULL, "sections end past the memory data");
	memcpy(c, b, len);
	c[100] = 1;
	fix_header_crc(c);
	expect_reject(c, len, len, NULL, "reserved");
	free(c);
	free(b);
	free(f.mem);
}

Test(snapshot, section_bits_flipped)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint8_t *c = malloc(len);
	size_t mem_off = rd64(b + 72);
	/* Every byte of every section (headers and payloads; padding too). */
	for (size_t i = 128; i < mem_off; i += 3) {
		memcpy(c, b, len);
		c[i] ^= 0x10;
		struct snap_image img;
		struct hatch_err err = { 0 };
		cr_assert_eq(snap_parse(c, len, len, NULL, &img, &err), -1,
			     "flip at 0x%zx accepted", i);
		cr_assert(strstr(err.msg, "checksum mismatch") || strstr(err.msg, "not zero") ||
				  strstr(err.msg, "runs past") || strstr(err.msg, "truncated"),
			  "flip at 0x%zx: %s", i, err.msg);
	}
	/* the message names the section */
	memcpy(c, b, len);
	size_t s1 = section_at(b, 1); /* vcpu0 sregs */
	c[s1 + 30] ^= 1;
	expect_reject(c, len, len, NULL, "section 1 (vcpu0 sregs) checksum mismatch");
	free(c);
	free(b);
	free(f.mem);
}

Test(snapshot, struct_size_mismatch_named)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	/* Say sregs is 304 bytes (a shorter struct; the rest becomes padding
	 * of the last 8 bytes) and fix every checksum: the size check must
	 * name the struct. */
	size_t s1 = section_at(b, 1);
	wr64(b + s1 + 8, 304);
	memset(b + s1 + 24 + 304, 0, 8);
	fix_section_crc(b, s1);
	expect_reject(b, len, len, NULL,
		      "section 1 (vcpu0 sregs) length 304, expected 312 (struct kvm_sregs)");
	free(b);
	free(f.mem);
}

Test(snapshot, shell_and_host_mismatch)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	struct snap_expect w = f.want;
	w.nvcpus = 1;
	expect_reject(b, len, len, &w, "2 vcpus and 0x40000 bytes of memory; this VM has 1 vcpus");
	w = f.want;
	w.mem_size = 2 * MEM;
	expect_reject(b, len, len, &w, "(memory differ)");
	w = f.want;
	w.cpu.cpuid_hash ^= 1;
	expect_reject(b, len, len, &w, "supported-CPUID hash 0x1234567890abcdef, this host's is 0x1234567890abcdee");
	w = f.want;
	memcpy(w.cpu.vendor, "AuthenticAMD", 12);
	expect_reject(b, len, len, &w, "taken on a GenuineIntel CPU, this host is AuthenticAMD");
	w = f.want;
	w.cpu.signature = 1;
	expect_reject(b, len, len, &w, "CPU signature 0x806f8");
	free(b);
	free(f.mem);
}

/* Rewrite extent `i` of the memory map and fix the checksum. */
static void set_extent(uint8_t *b, unsigned i, uint64_t gpa, uint64_t l, uint64_t fo)
{
	size_t mm = memmap_at(b);
	uint8_t *e = b + mm + 24 + i * 32;
	wr64(e, gpa);
	wr64(e + 8, l);
	wr64(e + 16, fo);
	fix_section_crc(b, mm);
}

Test(snapshot, bad_extents)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint8_t *c = malloc(len);
	size_t mm = memmap_at(b);
	const uint8_t *e = b + mm + 24;
#define EXT(i, k) rd64(e + (i) * 32 + (k) * 8)

	memcpy(c, b, len);
	set_extent(c, 1, EXT(1, 0) + 1, EXT(1, 1), EXT(1, 2));
	expect_reject(c, len, len, NULL, "memory extent 1 (gpa 0xa001, length 0x1000, file offset");
	expect_reject(c, len, len, NULL, "is not page-aligned");

	memcpy(c, b, len);
	set_extent(c, 1, EXT(1, 0), EXT(1, 1), EXT(1, 2) + 8);
	expect_reject(c, len, len, NULL, "not page-aligned");

	memcpy(c, b, len); /* extent 1 moved onto extent 0's pages */
	set_extent(c, 1, 0x2000, EXT(1, 1), EXT(1, 2));
	expect_reject(c, len, len, NULL, "memory extent 1 (gpa 0x2000) overlaps or precedes extent 0");

	memcpy(c, b, len); /* two extents on the same file bytes */
	set_extent(c, 1, EXT(1, 0), EXT(1, 1), EXT(0, 2));
	expect_reject(c, len, len, NULL, "memory extent 1 at file offset");

	memcpy(c, b, len);
	set_extent(c, 3, MEM, 4096, EXT(3, 2));
	expect_reject(c, len, len, NULL, "memory extent 3 (gpa 0x40000, length 0x1000) is outside guest RAM");

	memcpy(c, b, len); /* a length that wraps */
	set_extent(c, 3, EXT(3, 0), ~0ull - 4095, EXT(3, 2));
	expect_reject(c, len, len, NULL, "outside guest RAM");

	memcpy(c, b, len); /* a file offset near 2^64 */
	set_extent(c, 3, EXT(3, 0), 4096, ~0ull - 4095);
	expect_reject(c, len, len, NULL, "truncated: memory extent 3");

	/* memory data flipped: the structure parses, the data check fails */
	memcpy(c, b, len);
	c[len - 100] ^= 4;
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse(c, len, len, NULL, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(snap_verify_memory(&img, c, len, &err), -1);
	cr_assert_not_null(strstr(err.msg, "memory extent 3 (gpa 0x3f000) checksum mismatch"), "%s", err.msg);
	snap_image_free(&img);
#undef EXT
	free(c);
	free(b);
	free(f.mem);
}

Test(snapshot, high_memory_split_at_the_hole)
{
	/* Extents' GPAs follow the PC layout: RAM past 3 GiB is at 4 GiB. A
	 * 3 GiB + 8 KiB guest with the pages around the hole non-zero gives two
	 * extents. The mapping is sparse (MAP_NORESERVE), so it costs 12 KiB. */
	uint64_t size = (3ull << 30) + 8192;
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	memset(mem + (3ull << 30) - 4096, 0xaa, 8192);
	struct fixture f;
	fixture_init(&f);
	f.st.mem = mem;
	f.st.mem_size = size;
	FILE *tf = tmpfile();
	int fd = fileno(tf);
	struct hatch_err err = { 0 };
	/* snap_write_fd scans 3 GiB of mostly untouched zero pages */
	cr_assert_eq(snap_write_fd(fd, &f.st, &err), 0, "%s", err.msg);
	size_t len = (size_t)lseek(fd, 0, SEEK_END);
	uint8_t *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	struct snap_image img;
	cr_assert_eq(snap_parse(m, len, len, NULL, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(img.nextents, 2);
	cr_assert_eq(img.ext[0].gpa, (3ull << 30) - 4096);
	cr_assert_eq(img.ext[1].gpa, 1ull << 32);
	cr_assert_eq(snap_verify_memory(&img, m, len, &err), 0, "%s", err.msg);
	snap_image_free(&img);
	munmap(m, len);
	munmap(mem, size);
	fclose(tf);
	free(f.mem);
}

Test(snapshot, writer_rejects_bad_state)
{
	struct fixture f;
	fixture_init(&f);
	uint8_t *b = NULL;
	size_t len;
	struct hatch_err err = { 0 };
	f.st.nvcpus = 0;
	cr_assert_eq(snap_encode(&f.st, &b, &len, &err), -1);
	cr_assert_not_null(strstr(err.msg, "vcpus 0"));
	f.st.nvcpus = NVCPUS;
	f.st.mem_size = 100;
	cr_assert_eq(snap_encode(&f.st, &b, &len, &err), -1);
	cr_assert_not_null(strstr(err.msg, "multiple of 4 KiB"));
	free(f.mem);
}

/* ---- the public header peek/verify and the guest RAM layout ---------- */

static void expect_peek_reject(const uint8_t *b, size_t len, const char *needle)
{
	struct snap_header h;
	memset(&h, 0xa5, sizeof(h));
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_header_peek(b, len, &h, &err), -1,
		     "peek accepted a bad header (wanted \"%s\")", needle);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, needle), "message \"%s\" does not contain \"%s\"",
			   err.msg, needle);
	struct snap_header zero = { 0 };
	cr_assert_eq(memcmp(&h, &zero, sizeof(h)), 0, "a refused header is not zeroed");
}

Test(snapshot, header_peek_gives_the_fields)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse(b, len, len, NULL, &img, &err), 0, "%s", err.msg);
	/* the header's bytes alone are enough */
	struct snap_header h;
	cr_assert_eq(snap_header_peek(b, 128, &h, &err), 0, "%s", err.msg);
	cr_assert_eq(h.version, SNAP_VERSION);
	cr_assert_eq(memcmp(&h.cpu, &f.st.cpu, sizeof(h.cpu)), 0);
	cr_assert_eq(h.mem_size, MEM);
	cr_assert_eq(h.nvcpus, NVCPUS);
	cr_assert_eq(h.nsections, rd32(b + 52));
	cr_assert_eq(h.sections_offset, 128);
	cr_assert_eq(h.mem_offset, img.mem_offset);
	cr_assert_eq(h.mem_data_size, img.mem_data_size);
	cr_assert_eq(h.file_size, len);
	cr_assert_eq(h.crc, rd32(b + 124));
	cr_assert_eq(h.crc, snap_crc32c(0, b, 124));
	cr_assert_eq(img.header_crc, h.crc);
	snap_image_free(&img);
	free(b);
	free(f.mem);
}

Test(snapshot, header_peek_rejects_damage_clearly)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint8_t *c = malloc(len);

	expect_peek_reject(b, 0, "truncated: file is 0x0 bytes, the header alone is 0x80");
	expect_peek_reject(b, 127, "truncated: file is 0x7f bytes");
	memcpy(c, b, len);
	c[3] ^= 1;
	expect_peek_reject(c, len, "bad magic (not a hatchery snapshot)");
	memcpy(c, b, len);
	wr32(c + 8, 7);
	fix_header_crc(c);
	expect_peek_reject(c, len, "format version 7, this build reads version 1");
	/* a corrupt CRC, and a corrupt field under a good CRC */
	memcpy(c, b, len);
	c[124] ^= 0x10;
	expect_peek_reject(c, len, "header checksum mismatch");
	memcpy(c, b, len);
	c[40] ^= 0x10;
	expect_peek_reject(c, len, "header checksum mismatch");
	memcpy(c, b, len);
	wr32(c + 12, 256);
	fix_header_crc(c);
	expect_peek_reject(c, len, "header size 256, expected 128");
	memcpy(c, b, len);
	wr32(c + 48, 65);
	fix_header_crc(c);
	expect_peek_reject(c, len, "vcpu count 65 out of range 1..64");
	/* a layout that could be sound but is larger than any snapshot of
	 * this shape: a restoring child would have to map it */
	memcpy(c, b, len);
	uint64_t sec_size = 64ull << 20, mem_off = (128 + sec_size + 4095) & ~4095ull;
	wr64(c + 64, sec_size);
	wr64(c + 72, mem_off);
	wr64(c + 88, mem_off + rd64(b + 80));
	fix_header_crc(c);
	expect_peek_reject(c, len, "more than a snapshot of 2 vcpus and 0x40000 bytes");
	/* snap_parse gives the same message for the same header */
	expect_reject(c, len, len, NULL, "more than a snapshot of 2 vcpus");
	free(c);
	free(b);
	free(f.mem);
}

/* A temporary file holding n bytes of b. */
static int tmp_with(const uint8_t *b, size_t n)
{
	char path[] = "/tmp/test_snapshot.XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	cr_assert_eq(write(fd, b, n), (ssize_t)n);
	return fd;
}

Test(snapshot, header_read_fd_and_parse_fd)
{
	struct fixture f;
	fixture_init(&f);
	size_t len;
	uint8_t *b = encode(&f, &len);
	struct hatch_err err = { 0 };
	struct snap_header h;
	uint64_t size = 1;

	int fd = tmp_with(b, len);
	cr_assert_eq(snap_header_read_fd(fd, &h, &size, &err), 0, "%s", err.msg);
	cr_assert_eq(size, len);
	cr_assert_eq(h.crc, rd32(b + 124));
	cr_assert_eq(h.mem_offset, rd64(b + 72));
	struct snap_image img;
	cr_assert_eq(snap_parse_fd(fd, &f.want, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(img.nextents, 4);
	cr_assert_eq(img.header_crc, h.crc);
	cr_assert_eq(img.file_size, len);
	snap_image_free(&img);
	/* a page shorter: the header is fine, the parse names the extent */
	cr_assert_eq(ftruncate(fd, (off_t)len - 4096), 0);
	cr_assert_eq(snap_header_read_fd(fd, &h, &size, &err), 0, "%s", err.msg);
	cr_assert_eq(snap_parse_fd(fd, NULL, &img, &err), -1);
	cr_assert_not_null(strstr(err.msg, "truncated: memory extent 3"), "%s", err.msg);
	cr_assert_null(img.ext);
	close(fd);

	fd = tmp_with(b, 0);
	cr_assert_eq(snap_header_read_fd(fd, &h, &size, &err), -1);
	cr_assert_eq(size, 0);
	cr_assert_not_null(strstr(err.msg, "snapshot: truncated: file is 0x0 bytes"), "%s", err.msg);
	cr_assert_eq(snap_parse_fd(fd, NULL, &img, &err), -1);
	cr_assert_not_null(strstr(err.msg, "truncated"), "%s", err.msg);
	close(fd);

	uint8_t *c = malloc(len);
	memcpy(c, b, len);
	c[124] ^= 1;
	fd = tmp_with(c, len);
	cr_assert_eq(snap_header_read_fd(fd, &h, &size, &err), -1);
	cr_assert_eq(size, len);
	cr_assert_not_null(strstr(err.msg, "header checksum mismatch"), "%s", err.msg);
	close(fd);
	free(c);

	int p[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(snap_header_read_fd(p[0], &h, &size, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	cr_assert_not_null(strstr(err.msg, "not a regular file"), "%s", err.msg);
	close(p[0]);
	close(p[1]);
	free(b);
	free(f.mem);
}

Test(snapshot, guest_ram_layout)
{
	struct snap_ram_slot s[SNAP_RAM_SLOTS];
	cr_assert_eq(snap_ram_slots(64u << 20, s), 1);
	cr_assert_eq(s[0].gpa, 0);
	cr_assert_eq(s[0].offset, 0);
	cr_assert_eq(s[0].len, 64u << 20);
	cr_assert_eq(snap_ram_slots(3ull << 30, s), 1);
	cr_assert_eq(snap_ram_slots((3ull << 30) + 8192, s), 2);
	cr_assert_eq(s[0].len, 3ull << 30);
	cr_assert_eq(s[1].gpa, 1ull << 32);
	cr_assert_eq(s[1].offset, 3ull << 30);
	cr_assert_eq(s[1].len, 8192);
	cr_assert_eq(snap_gpa_to_ram_offset(0x1000), 0x1000);
	cr_assert_eq(snap_gpa_to_ram_offset((3ull << 30) - 4096), (3ull << 30) - 4096);
	cr_assert_eq(snap_gpa_to_ram_offset((1ull << 32) + 4096), (3ull << 30) + 4096);
}

/* ---- the devices section (type 38): a Linux guest's snapshot ----------
 * Offsets are docs/snapshot.md's "The devices section" tables: the fixed
 * part is 64 bytes, a virtio device record 304 (48 + 8 queue records of
 * 32), so device i is at 64 + 304 * i and its queue k at + 48 + 32 * k. */
#define DEV_VIRTIO(i) (64u + 304u * (i))
#define DEV_QUEUE(i, k) (DEV_VIRTIO(i) + 48u + 32u * (k))

/* A Linux guest's state: devices, no runtime. Device 0 is a console with
 * both queues live; device 1 (if nvirtio is 2) is being set up (no
 * DRIVER_OK), one queue ready but not enabled, one sized and unplaced. */
static void linux_init(struct fixture *f, struct snap_devices *d, uint32_t nvirtio)
{
	fixture_init(f);
	memset(d, 0, sizeof(*d));
	d->machine = SNAP_MACHINE_LINUX;
	d->uart = (struct snap_uart){ .ier = 0x0f, .lcr = 0x03, .mcr = 0x0b, .scr = 0x5a,
				      .fcr = 0xc1, .dll = 0x01, .dlm = 0x02,
				      .thr_pending = true, .irq_level = false };
	d->agent = (struct snap_agent_chan){ .bytes_in = 0x1122334455ull,
					     .bytes_out = 0x66778899aabbull };
	d->nvirtio = nvirtio;
	struct snap_virtio_dev *v = &d->virtio[0];
	*v = (struct snap_virtio_dev){
		.device_id = 3, .nqueues = 2, .status = 0x0f, .interrupt_status = 1,
		.config_generation = 2, .device_features_sel = 1, .driver_features_sel = 1,
		.queue_sel = 1, .device_features = 0x100000003ull,
		.driver_features = 0x100000001ull,
	};
	v->q[0] = (struct snap_virtio_queue){ .desc_gpa = 0x4000, .avail_gpa = 0x4400,
					      .used_gpa = 0x4800, .num = 64, .last_avail = 7,
					      .used_idx = 6, .ready = true, .enabled = true };
	v->q[1] = (struct snap_virtio_queue){ .desc_gpa = 0x5000, .avail_gpa = 0x5400,
					      .used_gpa = 0x5800, .num = 64, .last_avail = 3,
					      .used_idx = 3, .ready = true, .enabled = true };
	if (nvirtio > 1) {
		v = &d->virtio[1];
		*v = (struct snap_virtio_dev){ .device_id = 2, .nqueues = 3, .status = 0x0b,
					       .device_features = 0x100000000ull,
					       .driver_features = 0x100000000ull };
		v->q[0] = (struct snap_virtio_queue){ .desc_gpa = 0x6000, .avail_gpa = 0x6800,
						      .used_gpa = 0x7000, .num = 128,
						      .ready = true };
		v->q[2].num = 256;
	}
	f->st.runtime = NULL;
	f->st.runtime_len = 0;
	f->st.devices = d;
}

static void assert_devices_eq(const struct snap_devices *a, const struct snap_devices *b)
{
	cr_assert_eq(a->machine, b->machine);
	cr_assert_eq(a->nvirtio, b->nvirtio);
	const struct snap_uart *u = &a->uart, *w = &b->uart;
	cr_assert(u->ier == w->ier && u->lcr == w->lcr && u->mcr == w->mcr && u->scr == w->scr &&
		  u->fcr == w->fcr && u->dll == w->dll && u->dlm == w->dlm &&
		  u->thr_pending == w->thr_pending && u->irq_level == w->irq_level);
	cr_assert_eq(a->agent.bytes_in, b->agent.bytes_in);
	cr_assert_eq(a->agent.bytes_out, b->agent.bytes_out);
	for (uint32_t i = 0; i < a->nvirtio; i++) {
		const struct snap_virtio_dev *x = &a->virtio[i], *y = &b->virtio[i];
		cr_assert(x->device_id == y->device_id && x->nqueues == y->nqueues &&
			  x->status == y->status && x->interrupt_status == y->interrupt_status &&
			  x->config_generation == y->config_generation &&
			  x->device_features_sel == y->device_features_sel &&
			  x->driver_features_sel == y->driver_features_sel &&
			  x->queue_sel == y->queue_sel && x->device_features == y->device_features &&
			  x->driver_features == y->driver_features, "virtio %u", i);
		for (unsigned k = 0; k < SNAP_VIRTIO_MAX_QUEUES; k++) {
			const struct snap_virtio_queue *p = &x->q[k], *q = &y->q[k];
			cr_assert(p->desc_gpa == q->desc_gpa && p->avail_gpa == q->avail_gpa &&
				  p->used_gpa == q->used_gpa && p->num == q->num &&
				  p->last_avail == q->last_avail && p->used_idx == q->used_idx &&
				  p->ready == q->ready && p->enabled == q->enabled,
				  "virtio %u queue %u", i, k);
		}
	}
}

/* The devices section of a Linux snapshot: the one before the memory map. */
static size_t devices_at(const uint8_t *b)
{
	size_t off = section_at(b, rd32(b + 52) - 2);
	cr_assert_eq(rd32(b + off), 38, "section before the memory map is type %u", rd32(b + off));
	return off;
}

Test(snapshot, devices_round_trip)
{
	for (uint32_t n = 1; n <= 2; n++) {
		struct fixture f;
		struct snap_devices d;
		linux_init(&f, &d, n);
		size_t len;
		uint8_t *b = encode(&f, &len);
		struct snap_image img;
		struct hatch_err err = { 0 };
		cr_assert_eq(snap_parse(b, len, len, &f.want, &img, &err), 0, "%s", err.msg);
		cr_assert(snap_is_linux(&img.st));
		cr_assert_null(img.st.runtime);
		cr_assert_eq(img.st.runtime_len, 0);
		cr_assert_not_null(img.st.devices);
		cr_assert_neq(img.st.devices, &d, "the image holds its own copy");
		assert_devices_eq(img.st.devices, &d);
		for (uint32_t i = n; i < SNAP_MAX_VIRTIO; i++)
			cr_assert_eq(img.st.devices->virtio[i].device_id, 0);
		snap_image_free(&img);

		/* The bytes where the doc's tables put them. */
		size_t s = devices_at(b), p = s + 24;
		cr_assert_eq(rd32(b + s + 4), 0);
		cr_assert_eq(rd64(b + s + 8), 64 + 304 * n);
		cr_assert_eq(memcmp(b + p, "HDV1", 4), 0);
		cr_assert_eq(rd32(b + p + 4), 1);
		cr_assert_eq(rd32(b + p + 8), SNAP_MACHINE_LINUX);
		cr_assert_eq(rd32(b + p + 12), n);
		const uint8_t uart[9] = { 0x0f, 0x03, 0x0b, 0x5a, 0xc1, 0x01, 0x02, 1, 0 };
		cr_assert_eq(memcmp(b + p + 16, uart, 9), 0);
		cr_assert_eq(rd64(b + p + 40), 0x1122334455ull);
		cr_assert_eq(rd64(b + p + 48), 0x66778899aabbull);
		const uint8_t *v = b + p + DEV_VIRTIO(0);
		cr_assert(rd32(v) == 3 && rd32(v + 4) == 2 && rd32(v + 8) == 0x0f &&
			  rd32(v + 12) == 1 && rd32(v + 16) == 2 && rd32(v + 20) == 1 &&
			  rd32(v + 24) == 1 && rd32(v + 28) == 1);
		cr_assert_eq(rd64(v + 32), 0x100000003ull);
		cr_assert_eq(rd64(v + 40), 0x100000001ull);
		const uint8_t *q = b + p + DEV_QUEUE(0, 1);
		cr_assert(rd64(q) == 0x5000 && rd64(q + 8) == 0x5400 && rd64(q + 16) == 0x5800);
		uint16_t num, last, used;
		memcpy(&num, q + 24, 2);
		memcpy(&last, q + 26, 2);
		memcpy(&used, q + 28, 2);
		cr_assert(num == 64 && last == 3 && used == 3 && q[30] == 1 && q[31] == 1);
		if (n == 2)
			cr_assert_eq(rd32(b + p + DEV_VIRTIO(1)), 2);
		free(b);
		free(f.mem);
	}
}

Test(snapshot, devices_write_fd_matches_encode)
{
	struct fixture f;
	struct snap_devices d;
	linux_init(&f, &d, 2);
	size_t len;
	uint8_t *b = encode(&f, &len);
	FILE *tf = tmpfile();
	int fd = fileno(tf);
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_write_fd(fd, &f.st, &err), 0, "%s", err.msg);
	cr_assert_eq((size_t)lseek(fd, 0, SEEK_END), len);
	struct snap_image img;
	cr_assert_eq(snap_parse_fd(fd, &f.want, &img, &err), 0, "%s", err.msg);
	assert_devices_eq(img.st.devices, &d);
	snap_image_free(&img);
	fclose(tf);
	free(b);
	free(f.mem);
}

static void expect_encode_reject(const struct snap_state *s, const char *needle)
{
	uint8_t *b = NULL;
	size_t len;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_encode(s, &b, &len, &err), -1, "writer accepted (wanted \"%s\")", needle);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, needle), "message \"%s\" does not contain \"%s\"",
			   err.msg, needle);
}

/* A section: 24-byte header, payload, zero padding to 8; checksummed. */
static uint8_t *mksec(uint32_t type, const void *payload, size_t len, size_t *out_len)
{
	size_t n = 24 + ((len + 7) & ~(size_t)7);
	uint8_t *s = calloc(1, n);
	wr32(s, type);
	wr64(s + 8, len);
	memcpy(s + 24, payload, len);
	fix_section_crc(s, 0);
	*out_len = n;
	return s;
}

struct piece {
	const uint8_t *p;
	size_t len;
};

/* A file with b's header (of a snapshot with all-zero memory: no memory
 * data) and these sections, its layout fields and checksum fixed. */
static uint8_t *rebuild(const uint8_t *b, const struct piece *sec, unsigned n, size_t *out_len)
{
	size_t end = 128;
	for (unsigned i = 0; i < n; i++)
		end += sec[i].len;
	size_t mem_off = (end + 4095) & ~(size_t)4095;
	uint8_t *c = calloc(1, mem_off);
	memcpy(c, b, 128);
	size_t off = 128;
	for (unsigned i = 0; i < n; i++) {
		memcpy(c + off, sec[i].p, sec[i].len);
		off += sec[i].len;
	}
	wr32(c + 52, n);
	wr64(c + 64, end - 128);
	wr64(c + 72, mem_off);
	wr64(c + 80, 0);
	wr64(c + 88, mem_off);
	fix_header_crc(c);
	*out_len = mem_off;
	return c;
}

/* b's sections as pieces (at most 64). */
static unsigned pieces_of(const uint8_t *b, struct piece *out)
{
	unsigned ns = rd32(b + 52);
	cr_assert_leq(ns, 64);
	for (unsigned i = 0; i < ns; i++) {
		size_t a = section_at(b, i), z = section_at(b, i + 1);
		out[i] = (struct piece){ b + a, z - a };
	}
	return ns;
}

Test(snapshot, exactly_one_of_runtime_and_devices)
{
	struct fixture f;
	struct snap_devices d;
	linux_init(&f, &d, 1);
	memset(f.mem, 0, MEM); /* no memory data: sections can be spliced */

	/* The writer. */
	f.st.devices = NULL;
	expect_encode_reject(&f.st, "neither runtime state nor devices");
	f.st.runtime = f.runtime;
	f.st.runtime_len = sizeof(f.runtime);
	f.st.devices = &d;
	expect_encode_reject(&f.st, "both runtime state and devices");

	/* The parser: a runtime file and a Linux one, spliced. */
	size_t rlen, llen, clen;
	f.st.devices = NULL;
	uint8_t *rb = encode(&f, &rlen);
	f.st.runtime = NULL;
	f.st.runtime_len = 0;
	f.st.devices = &d;
	uint8_t *lb = encode(&f, &llen);
	struct piece r[65], l[65];
	unsigned rn = pieces_of(rb, r), ln = pieces_of(lb, l);
	cr_assert_eq(rn, ln);
	cr_assert_eq(rd32(r[rn - 2].p), 37);
	cr_assert_eq(rd32(l[ln - 2].p), 38);
	/* the Linux file with the runtime section put back before devices */
	memmove(&l[ln - 1], &l[ln - 2], 2 * sizeof(l[0]));
	l[ln - 2] = r[rn - 2];
	uint8_t *c = rebuild(lb, l, ln + 1, &clen);
	expect_reject(c, clen, clen, NULL,
		      "both a runtime section (a kernel-less guest) and a devices section (a Linux guest)");
	free(c);
	/* the runtime file without its runtime section */
	r[rn - 2] = r[rn - 1];
	c = rebuild(rb, r, rn - 1, &clen);
	expect_reject(c, clen, clen, NULL,
		      "neither a runtime section (a kernel-less guest) nor a devices section");
	free(c);
	/* and the rebuild itself gives a sound file */
	pieces_of(lb, l);
	c = rebuild(lb, l, ln, &clen);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse(c, clen, clen, NULL, &img, &err), 0, "%s", err.msg);
	snap_image_free(&img);
	free(c);
	free(rb);
	free(lb);
	free(f.mem);
}

/* One field of the devices payload rewritten (width 1, 2, 4 or 8 bytes at
 * payload offset `off`), the section's checksum fixed: refused, naming it. */
struct dev_case {
	unsigned off, width;
	uint64_t val;
	const char *needle;
};

static void patch(uint8_t *p, unsigned width, uint64_t v)
{
	switch (width) {
	case 1: *p = (uint8_t)v; break;
	case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
	case 4: wr32(p, (uint32_t)v); break;
	default: wr64(p, v); break;
	}
}

Test(snapshot, devices_checks_name_the_field)
{
	static const struct dev_case cases[] = {
		{ 0, 4, 0x12345678, "snapshot: devices: bad magic 0x12345678" },
		{ 4, 4, 2, "snapshot: devices section version 2, this build reads 1" },
		{ 8, 4, 2, "devices: machine 2, this build knows 1" },
		{ 12, 4, 0, "devices: 0 virtio devices, must be 1..8" },
		{ 12, 4, 9, "devices: 9 virtio devices, must be 1..8" },
		{ 12, 4, 1, "devices: length 672, expected 368 for 1 virtio devices" },
		{ 16 + 7, 1, 2, "devices: uart thr_pending 2, must be 0 or 1" },
		{ 16 + 8, 1, 5, "devices: uart irq_level 5, must be 0 or 1" },
		{ 16 + 15, 1, 1, "devices: uart reserved byte 15 is not zero" },
		{ 32 + 3, 1, 1, "devices: i8042 (no state) byte 3 is not zero" },
		{ 60, 1, 1, "devices: reserved byte 60 is not zero" },
		{ DEV_VIRTIO(1), 4, 0, "devices: virtio 1: device id 0" },
		{ DEV_VIRTIO(0) + 4, 4, 0, "devices: virtio 0: 0 queues, must be 1..8" },
		{ DEV_VIRTIO(1) + 4, 4, 9, "devices: virtio 1: 9 queues, must be 1..8" },
		{ DEV_VIRTIO(0) + 8, 4, 0x4f, "virtio 0: status 0x4f has DEVICE_NEEDS_RESET (0x40)" },
		{ DEV_VIRTIO(0) + 8, 4, 0x8f, "virtio 0: status 0x8f has FAILED (0x80)" },
		{ DEV_VIRTIO(0) + 8, 4, 0x1f, "virtio 0: status 0x1f has bits other than 0xf" },
		{ DEV_VIRTIO(0) + 12, 4, 4, "virtio 0: interrupt status 0x4, at most 0x3" },
		{ DEV_VIRTIO(0) + 40, 8, 0x100000005ull,
		  "virtio 0: driver features 0x100000005 are not a subset of device features 0x100000003" },
		{ DEV_VIRTIO(0) + 28, 4, 8, "virtio 0: queue_sel 8, must be < 8" },
		{ DEV_QUEUE(0, 1) + 24, 2, 100, "devices: virtio 0 queue 1: size 100 is not a power of 2" },
		{ DEV_QUEUE(1, 2) + 24, 2, 512, "devices: virtio 1 queue 2: size 512, at most 256" },
		{ DEV_QUEUE(0, 1) + 30, 1, 2, "devices: virtio 0 queue 1: ready 2, must be 0 or 1" },
		{ DEV_QUEUE(1, 5) + 31, 1, 7, "devices: virtio 1 queue 5: enabled 7, must be 0 or 1" },
		{ DEV_QUEUE(0, 1) + 30, 1, 0, "virtio 0 queue 1: enabled but not ready" },
		{ DEV_QUEUE(0, 1) + 24, 2, 0, "virtio 0 queue 1: enabled with size 0" },
		{ DEV_VIRTIO(0) + 8, 4, 0x0b,
		  "virtio 0 queue 0: enabled but the device status 0xb lacks DRIVER_OK" },
		{ DEV_QUEUE(0, 1) + 0, 8, 0x5008,
		  "virtio 0 queue 1: descriptor table at 0x5008 is not 16-byte aligned" },
		{ DEV_QUEUE(1, 0) + 8, 8, 0x6801,
		  "virtio 1 queue 0: available ring at 0x6801 is not 2-byte aligned" },
		{ DEV_QUEUE(0, 0) + 16, 8, 0x4802,
		  "virtio 0 queue 0: used ring at 0x4802 is not 4-byte aligned" },
		{ DEV_QUEUE(0, 1) + 0, 8, 0x3ff00,
		  "virtio 0 queue 1: descriptor table at 0x3ff00 (0x400 bytes) is outside guest RAM (0x40000 bytes)" },
		{ DEV_QUEUE(0, 1) + 8, 8, 0x3fffe,
		  "virtio 0 queue 1: available ring at 0x3fffe (0x86 bytes) is outside guest RAM" },
		{ DEV_QUEUE(0, 0) + 16, 8, 0xfffffffffffffffcull,
		  "virtio 0 queue 0: used ring at 0xfffffffffffffffc (0x206 bytes) is outside guest RAM" },
		{ DEV_QUEUE(0, 2) + 24, 2, 1, "virtio 0 queue 2: not zero, the device has 2 queues" },
		{ DEV_QUEUE(0, 7) + 0, 8, 0x1000, "virtio 0 queue 7: not zero, the device has 2 queues" },
		{ DEV_QUEUE(1, 7) + 30, 1, 1, "virtio 1 queue 7: not zero, the device has 3 queues" },
	};
	struct fixture f;
	struct snap_devices d;
	linux_init(&f, &d, 2);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint8_t *c = malloc(len);
	size_t s = devices_at(b);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(c, b, len);
		patch(c + s + 24 + cases[i].off, cases[i].width, cases[i].val);
		fix_section_crc(c, s);
		expect_reject(c, len, len, NULL, cases[i].needle);
	}
	/* What is not checked for a queue that is not enabled: its rings
	 * need not be in guest RAM (the device maps them only on enable). */
	memcpy(c, b, len);
	patch(c + s + 24 + DEV_QUEUE(1, 0), 8, 0x80000000ull);
	fix_section_crc(c, s);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse(c, len, len, NULL, &img, &err), 0, "%s", err.msg);
	cr_assert_eq(img.st.devices->virtio[1].q[0].desc_gpa, 0x80000000ull);
	snap_image_free(&img);
	free(c);
	free(b);
	free(f.mem);
}

Test(snapshot, devices_corrupt_and_wrong_length)
{
	struct fixture f;
	struct snap_devices d;
	linux_init(&f, &d, 2);
	size_t len;
	uint8_t *b = encode(&f, &len);
	uint8_t *c = malloc(len);
	size_t s = devices_at(b);
	unsigned n = rd32(b + 52) - 2; /* its section number */
	char needle[64];
	snprintf(needle, sizeof(needle), "section %u (devices) checksum mismatch", n);
	/* any byte of its payload, checksum not fixed */
	for (size_t i = 0; i < 64 + 2 * 304; i += 7) {
		memcpy(c, b, len);
		c[s + 24 + i] ^= 0x20;
		expect_reject(c, len, len, NULL, needle);
	}
	free(c);

	/* Lengths: short of the fixed part, one device's worth short, longer
	 * than what nvirtio gives; spliced into a file with no memory data. */
	memset(f.mem, 0, MEM);
	free(b);
	b = encode(&f, &len);
	s = devices_at(b);
	struct piece p[65];
	unsigned ns = pieces_of(b, p);
	const uint8_t *payload = b + s + 24;
	uint8_t big[64 + 3 * 304] = { 0 };
	memcpy(big, payload, 64 + 2 * 304);
	static const struct {
		size_t len;
		const char *needle;
	} lens[] = {
		{ 0, "devices: length 0, shorter than its 64-byte fixed part" },
		{ 10, "devices: length 10, shorter than its 64-byte fixed part" },
		{ 64, "devices: length 64, expected 672 for 2 virtio devices" },
		{ 64 + 304, "devices: length 368, expected 672 for 2 virtio devices" },
		{ 64 + 2 * 304 - 2, "devices: length 670, expected 672" },
		{ 64 + 2 * 304 + 8, "devices: length 680, expected 672" },
		{ 64 + 3 * 304, "devices: length 976, expected 672" },
	};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t sl, clen;
		uint8_t *sec = mksec(38, big, lens[i].len, &sl);
		p[ns - 2] = (struct piece){ sec, sl };
		uint8_t *cc = rebuild(b, p, ns, &clen);
		expect_reject(cc, clen, clen, NULL, lens[i].needle);
		free(cc);
		free(sec);
	}
	free(b);
	free(f.mem);
}

Test(snapshot, devices_writer_refuses_what_the_parser_would)
{
	struct fixture f;
	struct snap_devices d;
	linux_init(&f, &d, 2);
	d.nvirtio = 0;
	expect_encode_reject(&f.st, "devices: 0 virtio devices, must be 1..8");
	d.nvirtio = SNAP_MAX_VIRTIO + 1;
	expect_encode_reject(&f.st, "devices: 9 virtio devices, must be 1..8");
	d.nvirtio = 2;
	d.machine = 7;
	expect_encode_reject(&f.st, "devices: machine 7");
	d.machine = SNAP_MACHINE_LINUX;
	d.virtio[0].status |= 0x40;
	expect_encode_reject(&f.st, "virtio 0: status 0x4f has DEVICE_NEEDS_RESET");
	d.virtio[0].status = 0x0f;
	d.virtio[1].q[0].num = 100;
	expect_encode_reject(&f.st, "devices: virtio 1 queue 0: size 100 is not a power of 2");
	d.virtio[1].q[0].num = 128;
	d.virtio[0].q[1].used_gpa = MEM - 8;
	expect_encode_reject(&f.st, "virtio 0 queue 1: used ring at 0x3fff8 (0x206 bytes) is outside guest RAM");
	d.virtio[0].q[1].used_gpa = 0x5800;
	d.virtio[1].q[3].ready = true;
	expect_encode_reject(&f.st, "virtio 1 queue 3: not zero, the device has 3 queues");
	d.virtio[1].q[3].ready = false;
	/* entries past nvirtio are not looked at */
	d.virtio[5].status = 0xff;
	size_t len;
	uint8_t *b = encode(&f, &len);
	free(b);
	free(f.mem);
}

Test(snapshot, devices_rings_do_not_span_the_hole)
{
	/* 3 GiB + 8 KiB of guest RAM: [0, 3 GiB) and [4 GiB, 4 GiB + 8 KiB).
	 * The writer checks the devices before it reads any memory, so the
	 * mapping is never scanned here. */
	uint64_t size = (3ull << 30) + 8192;
	uint8_t *mem = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			    -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct fixture f;
	struct snap_devices d;
	linux_init(&f, &d, 1);
	f.st.mem = mem;
	f.st.mem_size = size;
	d.virtio[0].q[0].desc_gpa = (3ull << 30) - 0x200; /* 0x400 bytes: into the hole */
	expect_encode_reject(&f.st, "virtio 0 queue 0: descriptor table at 0xbffffe00 (0x400 bytes) is outside guest RAM");
	d.virtio[0].q[0].desc_gpa = (1ull << 32) + 8192 - 0x200; /* past the high slot */
	expect_encode_reject(&f.st, "descriptor table at 0x100001e00");
	munmap(mem, size);
	free(f.mem);
}
