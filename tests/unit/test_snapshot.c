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
