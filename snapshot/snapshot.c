/* snapshot.c - the snapshot file format (docs/snapshot.md). Pure: no KVM. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "snapshot.h"

#define E_INVAL HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT
#define E_PRECOND HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION
#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL

static const char snap_magic[8] = { 'H', 'A', 'T', 'C', 'H', 'S', 'N', 'P' };

/* The fuzz build (and only it) goes on past checksum mismatches, so that
 * mutated inputs reach the checks behind them: a fuzzer cannot fix a CRC. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_BAD(a, b) ((void)(a), (void)(b), false)
#else
#define CRC_BAD(a, b) ((a) != (b))
#endif

#define HDR_SIZE 128u
#define HDR_CRC_OFF 124u
#define SEC_HDR_SIZE 24u
#define EXT_SIZE 32u
#define SEC_ALIGN 8u

/* ---- CRC32C ---------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[i] = c;
	}
}

__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = (uint32_t)__builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len)
{
	/* Lazily initialised without a lock: two threads racing here write
	 * the same table values, and the release/acquire pair makes a thread
	 * that sees have_hw set also see the table. */
	static int have_hw_ = -1;
	int have_hw = __atomic_load_n(&have_hw_, __ATOMIC_ACQUIRE);
	if (have_hw < 0) {
		crc_init();
		__builtin_cpu_init();
		have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		__atomic_store_n(&have_hw_, have_hw, __ATOMIC_RELEASE);
	}
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	if (have_hw)
		c = crc_hw(c, p, len);
	else
		while (len--)
			c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

uint64_t snap_cpuid_hash(const struct kvm_cpuid_entry2 *e, uint32_t n)
{
	/* FNV-1a over each entry's defined fields (not the padding), without
	 * the APIC ID of the CPU that ran the ioctl: KVM_GET_SUPPORTED_CPUID
	 * reports it (measured on kvm-pvm: leaf 1 EBX[31:24] and leaf 0xB
	 * EDX differ between core 0 and core 1), so a hash over it depends on
	 * where the supervisor happened to run, and a snapshot saved by one
	 * hatcheryd would be refused by the next. Leaf 0x1F (EDX) and AMD's
	 * 0x8000001E (EAX) carry it too. */
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t fn = e[i].function, ebx = e[i].ebx, eax = e[i].eax, edx = e[i].edx;
		if (fn == 1)
			ebx &= 0x00ffffffu;
		if (fn == 0xb || fn == 0x1f)
			edx = 0;
		if (fn == 0x8000001eu)
			eax = 0;
		uint32_t f[7] = { fn, e[i].index, e[i].flags, eax, ebx, e[i].ecx, edx };
		for (int k = 0; k < 7; k++)
			for (int b = 0; b < 4; b++) {
				h ^= (f[k] >> (8 * b)) & 0xff;
				h *= 0x100000001b3ull;
			}
	}
	return h;
}

/* ---- section types --------------------------------------------------- */

enum snap_sec {
	SEC_VCPU_REGS = 1,
	SEC_VCPU_SREGS,
	SEC_VCPU_FPU,
	SEC_VCPU_XSAVE,
	SEC_VCPU_XCRS,
	SEC_VCPU_MSRS,
	SEC_VCPU_LAPIC,
	SEC_VCPU_MP_STATE,
	SEC_VCPU_EVENTS,
	SEC_VCPU_DEBUGREGS,
	SEC_VCPU_TSC,
	SEC_VCPU_LAST = SEC_VCPU_TSC,
	SEC_VM_PIC_MASTER = 32,
	SEC_VM_PIC_SLAVE,
	SEC_VM_IOAPIC,
	SEC_VM_PIT2,
	SEC_VM_CLOCK,
	SEC_RUNTIME,
	SEC_DEVICES,
	SEC_MEMMAP,
	SEC_VM_LAST = SEC_MEMMAP,
};

struct sec_info {
	const char *name;
	const char *struct_name; /* NULL: variable length */
	size_t size;             /* fixed size, or the element size */
	bool optional;
};

static const struct sec_info sec_infos[] = {
	[SEC_VCPU_REGS] = { "regs", "struct kvm_regs", sizeof(struct kvm_regs), false },
	[SEC_VCPU_SREGS] = { "sregs", "struct kvm_sregs", sizeof(struct kvm_sregs), false },
	[SEC_VCPU_FPU] = { "fpu", "struct kvm_fpu", sizeof(struct kvm_fpu), false },
	[SEC_VCPU_XSAVE] = { "xsave", NULL, 1, true },
	[SEC_VCPU_XCRS] = { "xcrs", "struct kvm_xcrs", sizeof(struct kvm_xcrs), true },
	[SEC_VCPU_MSRS] = { "msrs", NULL, sizeof(struct kvm_msr_entry), false },
	[SEC_VCPU_LAPIC] = { "lapic", "struct kvm_lapic_state", sizeof(struct kvm_lapic_state), false },
	[SEC_VCPU_MP_STATE] = { "mp_state", "struct kvm_mp_state", sizeof(struct kvm_mp_state), false },
	[SEC_VCPU_EVENTS] = { "events", "struct kvm_vcpu_events", sizeof(struct kvm_vcpu_events), false },
	[SEC_VCPU_DEBUGREGS] = { "debugregs", "struct kvm_debugregs", sizeof(struct kvm_debugregs), false },
	[SEC_VCPU_TSC] = { "tsc", "struct snap_tsc", sizeof(struct snap_tsc), false },
	[SEC_VM_PIC_MASTER] = { "pic master", "struct kvm_irqchip", sizeof(struct kvm_irqchip), false },
	[SEC_VM_PIC_SLAVE] = { "pic slave", "struct kvm_irqchip", sizeof(struct kvm_irqchip), false },
	[SEC_VM_IOAPIC] = { "ioapic", "struct kvm_irqchip", sizeof(struct kvm_irqchip), false },
	[SEC_VM_PIT2] = { "pit2", "struct kvm_pit_state2", sizeof(struct kvm_pit_state2), false },
	[SEC_VM_CLOCK] = { "clock", "struct kvm_clock_data", sizeof(struct kvm_clock_data), false },
	[SEC_RUNTIME] = { "runtime", NULL, 1, false },
	[SEC_DEVICES] = { "devices", NULL, 1, true },
	[SEC_MEMMAP] = { "memory map", NULL, EXT_SIZE, false },
};

static bool sec_is_vcpu(uint32_t t)
{
	return t >= SEC_VCPU_REGS && t <= SEC_VCPU_LAST;
}

static const struct sec_info *sec_info(uint32_t t)
{
	if (t >= HATCH_ARRAY_SIZE(sec_infos) || !sec_infos[t].name)
		return NULL;
	return &sec_infos[t];
}

/* "vcpu3 sregs", "ioapic", "type 99" */
static const char *sec_name(char *b, size_t n, uint32_t type, uint32_t idx)
{
	const struct sec_info *si = sec_info(type);
	if (!si)
		snprintf(b, n, "type %u", type);
	else if (sec_is_vcpu(type))
		snprintf(b, n, "vcpu%u %s", idx, si->name);
	else
		snprintf(b, n, "%s", si->name);
	return b;
}

/* ---- little-endian access -------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static bool add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_add_overflow(a, b, r);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ---- the writer ------------------------------------------------------ */

struct meta {
	uint8_t *buf;      /* header + sections + zero padding: mem_offset bytes */
	size_t len, cap;
	uint32_t nsections;
	struct snap_extent *ext;
	uint32_t next;
	uint64_t mem_data_size;
};

static int meta_grow(struct meta *m, size_t more)
{
	if (m->len + more <= m->cap)
		return 0;
	size_t cap = m->cap ? m->cap : 4096;
	while (cap < m->len + more)
		cap *= 2;
	uint8_t *b = realloc(m->buf, cap);
	if (!b)
		return -1;
	memset(b + m->cap, 0, cap - m->cap);
	m->buf = b;
	m->cap = cap;
	return 0;
}

static int put_sec(struct meta *m, uint32_t type, uint32_t idx, const void *p,
		   size_t len)
{
	size_t padded = align_up(len, SEC_ALIGN);
	if (meta_grow(m, SEC_HDR_SIZE + padded) < 0)
		return -1;
	uint8_t *h = m->buf + m->len;
	put32(h, type);
	put32(h + 4, idx);
	put64(h + 8, len);
	if (len)
		memcpy(h + SEC_HDR_SIZE, p, len);
	uint32_t crc = snap_crc32c(0, h, 16);
	put32(h + 16, snap_crc32c(crc, h + SEC_HDR_SIZE, len));
	put32(h + 20, 0);
	m->len += SEC_HDR_SIZE + padded;
	m->nsections++;
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[SNAP_PAGE_SIZE];
	return memcmp(p, zero, SNAP_PAGE_SIZE) == 0;
}

static uint64_t ram_off_to_gpa(uint64_t off)
{
	return off < SNAP_LOW_MEM_MAX ? off : off - SNAP_LOW_MEM_MAX + SNAP_HIGH_MEM_BASE;
}

/* Runs of non-zero pages, split where RAM jumps over the MMIO hole. */
static int find_extents(struct meta *m, const struct snap_state *s)
{
	uint32_t cap = 0;
	uint64_t npages = s->mem_size / SNAP_PAGE_SIZE;
	uint64_t file_off = 0; /* relative to mem_offset, fixed up later */
	for (uint64_t pg = 0; pg < npages;) {
		if (page_is_zero(s->mem + pg * SNAP_PAGE_SIZE)) {
			pg++;
			continue;
		}
		uint64_t start = pg;
		while (pg < npages && !page_is_zero(s->mem + pg * SNAP_PAGE_SIZE) &&
		       !(pg > start && pg * SNAP_PAGE_SIZE == SNAP_LOW_MEM_MAX))
			pg++;
		if (m->next == cap) {
			cap = cap ? cap * 2 : 16;
			struct snap_extent *e = realloc(m->ext, cap * sizeof(*e));
			if (!e)
				return -1;
			m->ext = e;
		}
		uint64_t off = start * SNAP_PAGE_SIZE, len = (pg - start) * SNAP_PAGE_SIZE;
		m->ext[m->next++] = (struct snap_extent){
			.gpa = ram_off_to_gpa(off), .len = len, .file_offset = file_off,
			.crc = snap_crc32c(0, s->mem + off, len),
		};
		file_off += len;
	}
	m->mem_data_size = file_off;
	return 0;
}

static int check_state(const struct snap_state *s, struct hatch_err *err)
{
	if (s->nvcpus == 0 || s->nvcpus > SNAP_MAX_VCPUS || !s->vcpu)
		return hatch_err_set(err, E_INVAL, 0, "snapshot: vcpus %u, must be 1..%d",
				     s->nvcpus, SNAP_MAX_VCPUS);
	if (s->mem_size == 0 || s->mem_size % SNAP_PAGE_SIZE || !s->mem)
		return hatch_err_set(err, E_INVAL, 0,
				     "snapshot: memory size 0x%llx is not a positive multiple of 4 KiB",
				     (unsigned long long)s->mem_size);
	for (uint32_t i = 0; i < s->nvcpus; i++) {
		const struct snap_vcpu *v = &s->vcpu[i];
		if (v->xsave && (v->xsave_len < sizeof(struct kvm_xsave) ||
				 v->xsave_len > SNAP_MAX_XSAVE))
			return hatch_err_set(err, E_INVAL, 0, "snapshot: vcpu%u xsave length %u",
					     i, v->xsave_len);
		if (v->nmsrs > SNAP_MAX_MSRS || (v->nmsrs && !v->msrs))
			return hatch_err_set(err, E_INVAL, 0, "snapshot: vcpu%u has %u MSRs, at most %d",
					     i, v->nmsrs, SNAP_MAX_MSRS);
	}
	if (s->runtime_len > SNAP_MAX_OPAQUE || s->devices_len > SNAP_MAX_OPAQUE ||
	    (s->runtime_len && !s->runtime) || (s->devices_len && !s->devices))
		return hatch_err_set(err, E_INVAL, 0, "snapshot: runtime or device state too large");
	return 0;
}

static int build_meta(const struct snap_state *s, struct meta *m,
		      struct hatch_err *err)
{
	memset(m, 0, sizeof(*m));
	if (check_state(s, err) < 0)
		return -1;
	if (meta_grow(m, HDR_SIZE) < 0)
		goto oom;
	m->len = HDR_SIZE;
	int r = 0;
	for (uint32_t i = 0; i < s->nvcpus && r == 0; i++) {
		const struct snap_vcpu *v = &s->vcpu[i];
		r |= put_sec(m, SEC_VCPU_REGS, i, &v->regs, sizeof(v->regs));
		r |= put_sec(m, SEC_VCPU_SREGS, i, &v->sregs, sizeof(v->sregs));
		r |= put_sec(m, SEC_VCPU_FPU, i, &v->fpu, sizeof(v->fpu));
		if (v->xsave)
			r |= put_sec(m, SEC_VCPU_XSAVE, i, v->xsave, v->xsave_len);
		if (v->has_xcrs)
			r |= put_sec(m, SEC_VCPU_XCRS, i, &v->xcrs, sizeof(v->xcrs));
		r |= put_sec(m, SEC_VCPU_MSRS, i, v->msrs, v->nmsrs * sizeof(*v->msrs));
		r |= put_sec(m, SEC_VCPU_LAPIC, i, &v->lapic, sizeof(v->lapic));
		r |= put_sec(m, SEC_VCPU_MP_STATE, i, &v->mp, sizeof(v->mp));
		r |= put_sec(m, SEC_VCPU_EVENTS, i, &v->events, sizeof(v->events));
		r |= put_sec(m, SEC_VCPU_DEBUGREGS, i, &v->debugregs, sizeof(v->debugregs));
		r |= put_sec(m, SEC_VCPU_TSC, i, &v->tsc, sizeof(v->tsc));
	}
	r |= put_sec(m, SEC_VM_PIC_MASTER, 0, &s->vm.pic_master, sizeof(s->vm.pic_master));
	r |= put_sec(m, SEC_VM_PIC_SLAVE, 0, &s->vm.pic_slave, sizeof(s->vm.pic_slave));
	r |= put_sec(m, SEC_VM_IOAPIC, 0, &s->vm.ioapic, sizeof(s->vm.ioapic));
	r |= put_sec(m, SEC_VM_PIT2, 0, &s->vm.pit, sizeof(s->vm.pit));
	r |= put_sec(m, SEC_VM_CLOCK, 0, &s->vm.clock, sizeof(s->vm.clock));
	r |= put_sec(m, SEC_RUNTIME, 0, s->runtime, s->runtime_len);
	if (s->devices)
		r |= put_sec(m, SEC_DEVICES, 0, s->devices, s->devices_len);
	if (r || find_extents(m, s) < 0)
		goto oom;

	/* The memory map's own length is known before the file offsets are:
	 * the data starts at the first page boundary after it. */
	uint64_t sections_end = m->len + SEC_HDR_SIZE + (uint64_t)m->next * EXT_SIZE;
	uint64_t mem_offset = align_up(sections_end, SNAP_PAGE_SIZE);
	uint8_t *ents = calloc(m->next ? m->next : 1, EXT_SIZE);
	if (!ents)
		goto oom;
	for (uint32_t i = 0; i < m->next; i++) {
		struct snap_extent *e = &m->ext[i];
		e->file_offset += mem_offset;
		uint8_t *p = ents + (size_t)i * EXT_SIZE;
		put64(p, e->gpa);
		put64(p + 8, e->len);
		put64(p + 16, e->file_offset);
		put32(p + 24, e->crc);
		put32(p + 28, 0);
	}
	r = put_sec(m, SEC_MEMMAP, 0, ents, (size_t)m->next * EXT_SIZE);
	free(ents);
	if (r || meta_grow(m, mem_offset - m->len) < 0)
		goto oom;
	uint64_t sections_size = m->len - HDR_SIZE;
	m->len = mem_offset; /* the padding is zero: meta_grow zeroes */

	uint8_t *h = m->buf;
	memcpy(h, snap_magic, 8);
	put32(h + 8, SNAP_VERSION);
	put32(h + 12, HDR_SIZE);
	memcpy(h + 16, s->cpu.vendor, 12);
	put32(h + 28, s->cpu.signature);
	put64(h + 32, s->cpu.cpuid_hash);
	put64(h + 40, s->mem_size);
	put32(h + 48, s->nvcpus);
	put32(h + 52, m->nsections);
	put64(h + 56, HDR_SIZE);
	put64(h + 64, sections_size);
	put64(h + 72, mem_offset);
	put64(h + 80, m->mem_data_size);
	put64(h + 88, mem_offset + m->mem_data_size);
	put32(h + HDR_CRC_OFF, snap_crc32c(0, h, HDR_CRC_OFF));
	return 0;
oom:
	free(m->buf);
	free(m->ext);
	memset(m, 0, sizeof(*m));
	return hatch_err_set(err, E_INTERNAL, ENOMEM, "snapshot: building");
}

int snap_encode(const struct snap_state *s, uint8_t **out, size_t *out_len,
		struct hatch_err *err)
{
	struct meta m;
	if (build_meta(s, &m, err) < 0)
		return -1;
	size_t total = m.len + m.mem_data_size;
	uint8_t *b = realloc(m.buf, total);
	if (!b) {
		free(m.buf);
		free(m.ext);
		return hatch_err_set(err, E_INTERNAL, ENOMEM, "snapshot: %zu bytes", total);
	}
	for (uint32_t i = 0; i < m.next; i++) {
		uint64_t gpa = m.ext[i].gpa;
		uint64_t off = gpa < SNAP_HIGH_MEM_BASE ? gpa : gpa - SNAP_HIGH_MEM_BASE + SNAP_LOW_MEM_MAX;
		memcpy(b + m.ext[i].file_offset, s->mem + off, m.ext[i].len);
	}
	free(m.ext);
	*out = b;
	*out_len = total;
	return 0;
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = pwrite(fd, b, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

int snap_write_fd(int fd, const struct snap_state *s, struct hatch_err *err)
{
	struct meta m;
	if (build_meta(s, &m, err) < 0)
		return -1;
	int ret = -1;
	if (ftruncate(fd, 0) < 0 ||
	    ftruncate(fd, (off_t)(m.len + m.mem_data_size)) < 0) {
		hatch_err_set(err, E_INTERNAL, errno, "snapshot: ftruncate");
		goto out;
	}
	if (pwrite_all(fd, m.buf, m.len, 0) < 0) {
		hatch_err_set(err, E_INTERNAL, errno, "snapshot: writing header");
		goto out;
	}
	for (uint32_t i = 0; i < m.next; i++) {
		uint64_t gpa = m.ext[i].gpa;
		uint64_t off = gpa < SNAP_HIGH_MEM_BASE ? gpa : gpa - SNAP_HIGH_MEM_BASE + SNAP_LOW_MEM_MAX;
		if (pwrite_all(fd, s->mem + off, m.ext[i].len, m.ext[i].file_offset) < 0) {
			hatch_err_set(err, E_INTERNAL, errno, "snapshot: writing memory extent %u", i);
			goto out;
		}
	}
	ret = 0;
out:
	free(m.buf);
	free(m.ext);
	return ret;
}

/* ---- the parser ------------------------------------------------------ */

void snap_image_free(struct snap_image *img)
{
	if (img->st.vcpu)
		for (uint32_t i = 0; i < img->st.nvcpus; i++) {
			free((void *)img->st.vcpu[i].xsave);
			free((void *)img->st.vcpu[i].msrs);
		}
	free(img->st.vcpu);
	free((void *)img->st.runtime);
	free((void *)img->st.devices);
	free(img->ext);
	memset(img, 0, sizeof(*img));
}

static void *dup_bytes(const uint8_t *p, size_t n)
{
	void *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

static bool gpa_in_ram(uint64_t mem_size, uint64_t gpa, uint64_t len)
{
	uint64_t low = mem_size < SNAP_LOW_MEM_MAX ? mem_size : SNAP_LOW_MEM_MAX;
	uint64_t end;
	if (!add_ok(gpa, len, &end))
		return false;
	if (end <= low)
		return true;
	return gpa >= SNAP_HIGH_MEM_BASE &&
	       end - SNAP_HIGH_MEM_BASE <= mem_size - low;
}

#define FAIL(...) do { hatch_err_set(err, E_INVAL, 0, "snapshot: " __VA_ARGS__); goto fail; } while (0)

int snap_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size,
	       const struct snap_expect *want, struct snap_image *img,
	       struct hatch_err *err)
{
	memset(img, 0, sizeof(*img));
	char nm[48];
	uint8_t *seen = NULL;
	if (buf_len > file_size)
		buf_len = (size_t)file_size;

	/* Header. */
	if (buf_len < HDR_SIZE)
		FAIL("truncated: file is 0x%zx bytes, the header alone is 0x%x", buf_len, HDR_SIZE);
	if (memcmp(buf, snap_magic, 8) != 0)
		FAIL("bad magic (not a hatchery snapshot)");
	uint32_t version = get32(buf + 8);
	if (version != SNAP_VERSION)
		FAIL("format version %u, this build reads version %d", version, SNAP_VERSION);
	uint32_t hcrc = snap_crc32c(0, buf, HDR_CRC_OFF);
	if (CRC_BAD(hcrc, get32(buf + HDR_CRC_OFF)))
		FAIL("header checksum mismatch (crc32c 0x%08x, stored 0x%08x)", hcrc,
		     get32(buf + HDR_CRC_OFF));
	if (get32(buf + 12) != HDR_SIZE)
		FAIL("header size %u, expected %u", get32(buf + 12), HDR_SIZE);
	for (unsigned i = 96; i < HDR_CRC_OFF; i++)
		if (buf[i])
			FAIL("header reserved byte %u is not zero", i);

	struct snap_state *st = &img->st;
	memcpy(st->cpu.vendor, buf + 16, 12);
	st->cpu.signature = get32(buf + 28);
	st->cpu.cpuid_hash = get64(buf + 32);
	st->mem_size = get64(buf + 40);
	st->nvcpus = get32(buf + 48);
	uint32_t nsections = get32(buf + 52);
	uint64_t sec_off = get64(buf + 56), sec_size = get64(buf + 64);
	img->mem_offset = get64(buf + 72);
	img->mem_data_size = get64(buf + 80);
	uint64_t stated_size = get64(buf + 88);
	img->file_size = file_size;

	/* Against the shell and the host: sound but does not fit. */
	if (st->nvcpus == 0 || st->nvcpus > SNAP_MAX_VCPUS)
		FAIL("vcpu count %u out of range 1..%d", st->nvcpus, SNAP_MAX_VCPUS);
	if (st->mem_size == 0 || st->mem_size % SNAP_PAGE_SIZE)
		FAIL("memory size 0x%llx is not a positive multiple of 4 KiB",
		     (unsigned long long)st->mem_size);
	if (want) {
		const char *what = NULL;
		if (st->nvcpus != want->nvcpus)
			what = "vcpus";
		else if (st->mem_size != want->mem_size)
			what = "memory";
		if (what) {
			hatch_err_set(err, E_PRECOND, 0,
				      "snapshot: %u vcpus and 0x%llx bytes of memory; this VM has %u vcpus and 0x%llx bytes (%s differ)",
				      st->nvcpus, (unsigned long long)st->mem_size, want->nvcpus,
				      (unsigned long long)want->mem_size, what);
			goto fail;
		}
		if (memcmp(st->cpu.vendor, want->cpu.vendor, 12) != 0) {
			hatch_err_set(err, E_PRECOND, 0, "snapshot: taken on a %.12s CPU, this host is %.12s",
				      st->cpu.vendor, want->cpu.vendor);
			goto fail;
		}
		if (st->cpu.signature != want->cpu.signature) {
			hatch_err_set(err, E_PRECOND, 0,
				      "snapshot: taken on CPU signature 0x%x (family/model/stepping), this host is 0x%x",
				      st->cpu.signature, want->cpu.signature);
			goto fail;
		}
		if (st->cpu.cpuid_hash != want->cpu.cpuid_hash) {
			hatch_err_set(err, E_PRECOND, 0,
				      "snapshot: supported-CPUID hash 0x%016llx, this host's is 0x%016llx (CPU features differ)",
				      (unsigned long long)st->cpu.cpuid_hash,
				      (unsigned long long)want->cpu.cpuid_hash);
			goto fail;
		}
	}

	/* Layout. */
	uint64_t sec_end, mem_end;
	if (sec_off != HDR_SIZE)
		FAIL("sections start at 0x%llx, expected 0x%x", (unsigned long long)sec_off, HDR_SIZE);
	if (!add_ok(sec_off, sec_size, &sec_end) || sec_end > img->mem_offset)
		FAIL("sections end past the memory data (0x%llx + 0x%llx > 0x%llx)",
		     (unsigned long long)sec_off, (unsigned long long)sec_size,
		     (unsigned long long)img->mem_offset);
	if (img->mem_offset % SNAP_PAGE_SIZE || img->mem_offset != align_up(sec_end, SNAP_PAGE_SIZE))
		FAIL("memory data at 0x%llx, expected 0x%llx (first page after the sections)",
		     (unsigned long long)img->mem_offset,
		     (unsigned long long)align_up(sec_end, SNAP_PAGE_SIZE));
	if (!add_ok(img->mem_offset, img->mem_data_size, &mem_end) || mem_end != stated_size)
		FAIL("file size field 0x%llx, expected 0x%llx + 0x%llx",
		     (unsigned long long)stated_size, (unsigned long long)img->mem_offset,
		     (unsigned long long)img->mem_data_size);
	if (buf_len < img->mem_offset)
		FAIL("truncated: sections end at 0x%llx, file is 0x%zx bytes",
		     (unsigned long long)img->mem_offset, buf_len);
	for (uint64_t i = sec_end; i < img->mem_offset; i++)
		if (buf[i])
			FAIL("padding byte at 0x%llx before the memory data is not zero",
			     (unsigned long long)i);

	st->vcpu = calloc(st->nvcpus, sizeof(*st->vcpu));
	seen = calloc((size_t)st->nvcpus * (SEC_VCPU_LAST + 1) + SEC_VM_LAST + 1, 1);
	if (!st->vcpu || !seen) {
		hatch_err_set(err, E_INTERNAL, ENOMEM, "snapshot: parsing");
		goto fail;
	}
	uint8_t *vm_seen = seen + (size_t)st->nvcpus * (SEC_VCPU_LAST + 1);

	/* Sections: every one bounded and checksummed before it is read. */
	uint64_t off = sec_off;
	const uint8_t *memmap = NULL;
	uint64_t memmap_len = 0;
	for (uint32_t n = 0; n < nsections; n++) {
		uint64_t body, end, padded;
		if (!add_ok(off, SEC_HDR_SIZE, &body) || body > sec_end)
			FAIL("section %u header at 0x%llx runs past the sections' end 0x%llx", n,
			     (unsigned long long)off, (unsigned long long)sec_end);
		const uint8_t *h = buf + off;
		uint32_t type = get32(h), idx = get32(h + 4);
		uint64_t len = get64(h + 8);
		sec_name(nm, sizeof(nm), type, idx);
		if (!add_ok(body, len, &end) || !add_ok(end, SEC_ALIGN - 1, &padded) ||
		    (padded &= ~(uint64_t)(SEC_ALIGN - 1)) > sec_end)
			FAIL("section %u (%s) length 0x%llx runs past the sections' end 0x%llx", n, nm,
			     (unsigned long long)len, (unsigned long long)sec_end);
		uint32_t crc = snap_crc32c(snap_crc32c(0, h, 16), buf + body, (size_t)len);
		if (CRC_BAD(crc, get32(h + 16)))
			FAIL("section %u (%s) checksum mismatch (crc32c 0x%08x, stored 0x%08x)", n,
			     nm, crc, get32(h + 16));
		if (get32(h + 20))
			FAIL("section %u (%s) reserved field is not zero", n, nm);
		for (uint64_t i = end; i < padded; i++)
			if (buf[i])
				FAIL("section %u (%s) padding is not zero", n, nm);
		const struct sec_info *si = sec_info(type);
		if (!si)
			FAIL("section %u has unknown type %u", n, type);
		uint8_t *seenp;
		if (sec_is_vcpu(type)) {
			if (idx >= st->nvcpus)
				FAIL("section %u (%s) for vcpu %u, the snapshot has %u", n, nm, idx,
				     st->nvcpus);
			seenp = &seen[(size_t)idx * (SEC_VCPU_LAST + 1) + type];
		} else {
			if (idx)
				FAIL("section %u (%s) index %u, expected 0", n, nm, idx);
			seenp = &vm_seen[type];
		}
		if (*seenp)
			FAIL("section %u (%s) appears twice", n, nm);
		*seenp = 1;
		if (si->struct_name && len != si->size)
			FAIL("section %u (%s) length %llu, expected %zu (%s)", n, nm,
			     (unsigned long long)len, si->size, si->struct_name);
		if (!si->struct_name && len % si->size)
			FAIL("section %u (%s) length %llu is not a multiple of %zu", n, nm,
			     (unsigned long long)len, si->size);

		const uint8_t *p = buf + body;
		struct snap_vcpu *v = sec_is_vcpu(type) ? &st->vcpu[idx] : NULL;
		switch (type) {
		case SEC_VCPU_REGS: memcpy(&v->regs, p, len); break;
		case SEC_VCPU_SREGS: memcpy(&v->sregs, p, len); break;
		case SEC_VCPU_FPU: memcpy(&v->fpu, p, len); break;
		case SEC_VCPU_XCRS: memcpy(&v->xcrs, p, len); v->has_xcrs = true; break;
		case SEC_VCPU_LAPIC: memcpy(&v->lapic, p, len); break;
		case SEC_VCPU_MP_STATE: memcpy(&v->mp, p, len); break;
		case SEC_VCPU_EVENTS: memcpy(&v->events, p, len); break;
		case SEC_VCPU_DEBUGREGS: memcpy(&v->debugregs, p, len); break;
		case SEC_VCPU_TSC: memcpy(&v->tsc, p, len); break;
		case SEC_VCPU_XSAVE:
			if (len < sizeof(struct kvm_xsave) || len > SNAP_MAX_XSAVE)
				FAIL("section %u (%s) length %llu, expected %zu..%u (struct kvm_xsave)",
				     n, nm, (unsigned long long)len, sizeof(struct kvm_xsave),
				     SNAP_MAX_XSAVE);
			if (!(v->xsave = dup_bytes(p, len)))
				goto oom;
			v->xsave_len = (uint32_t)len;
			break;
		case SEC_VCPU_MSRS:
			if (len / si->size > SNAP_MAX_MSRS)
				FAIL("section %u (%s) has %llu MSRs, at most %d", n, nm,
				     (unsigned long long)(len / si->size), SNAP_MAX_MSRS);
			if (!(v->msrs = dup_bytes(p, len)))
				goto oom;
			v->nmsrs = (uint32_t)(len / si->size);
			break;
		case SEC_VM_PIC_MASTER:
		case SEC_VM_PIC_SLAVE:
		case SEC_VM_IOAPIC: {
			struct kvm_irqchip *c = type == SEC_VM_PIC_MASTER ? &st->vm.pic_master :
						type == SEC_VM_PIC_SLAVE ? &st->vm.pic_slave : &st->vm.ioapic;
			memcpy(c, p, len);
			uint32_t want_id = type - SEC_VM_PIC_MASTER; /* KVM_IRQCHIP_* */
			if (c->chip_id != want_id)
				FAIL("section %u (%s) chip_id %u, expected %u", n, nm, c->chip_id, want_id);
			break;
		}
		case SEC_VM_PIT2: memcpy(&st->vm.pit, p, len); break;
		case SEC_VM_CLOCK: memcpy(&st->vm.clock, p, len); break;
		case SEC_RUNTIME:
		case SEC_DEVICES:
			if (len > SNAP_MAX_OPAQUE)
				FAIL("section %u (%s) length %llu, at most %u", n, nm,
				     (unsigned long long)len, SNAP_MAX_OPAQUE);
			if (type == SEC_RUNTIME) {
				if (!(st->runtime = dup_bytes(p, len)))
					goto oom;
				st->runtime_len = (uint32_t)len;
			} else {
				if (!(st->devices = dup_bytes(p, len)))
					goto oom;
				st->devices_len = (uint32_t)len;
			}
			break;
		case SEC_MEMMAP:
			memmap = p;
			memmap_len = len;
			break;
		}
		off = padded;
	}
	if (off != sec_end)
		FAIL("%u sections end at 0x%llx, the header says 0x%llx", nsections,
		     (unsigned long long)off, (unsigned long long)sec_end);
	for (uint32_t i = 0; i < st->nvcpus; i++)
		for (uint32_t t = SEC_VCPU_REGS; t <= SEC_VCPU_LAST; t++)
			if (!sec_infos[t].optional && !seen[(size_t)i * (SEC_VCPU_LAST + 1) + t])
				FAIL("section %s missing", sec_name(nm, sizeof(nm), t, i));
	for (uint32_t t = SEC_VM_PIC_MASTER; t <= SEC_VM_LAST; t++)
		if (sec_infos[t].name && !sec_infos[t].optional && !vm_seen[t])
			FAIL("section %s missing", sec_name(nm, sizeof(nm), t, 0));

	/* The memory map: sorted by GPA, contiguous from mem_offset. */
	img->nextents = (uint32_t)(memmap_len / EXT_SIZE);
	img->ext = calloc(img->nextents ? img->nextents : 1, sizeof(*img->ext));
	if (!img->ext)
		goto oom;
	uint64_t next_file = img->mem_offset, prev_end = 0;
	for (uint32_t i = 0; i < img->nextents; i++) {
		const uint8_t *p = memmap + (size_t)i * EXT_SIZE;
		struct snap_extent *e = &img->ext[i];
		e->gpa = get64(p);
		e->len = get64(p + 8);
		e->file_offset = get64(p + 16);
		e->crc = get32(p + 24);
		uint64_t gend, fend;
		if (get32(p + 28))
			FAIL("memory extent %u reserved field is not zero", i);
		if (e->len == 0 || e->gpa % SNAP_PAGE_SIZE || e->len % SNAP_PAGE_SIZE ||
		    e->file_offset % SNAP_PAGE_SIZE)
			FAIL("memory extent %u (gpa 0x%llx, length 0x%llx, file offset 0x%llx) is not page-aligned",
			     i, (unsigned long long)e->gpa, (unsigned long long)e->len,
			     (unsigned long long)e->file_offset);
		if (!gpa_in_ram(st->mem_size, e->gpa, e->len))
			FAIL("memory extent %u (gpa 0x%llx, length 0x%llx) is outside guest RAM (0x%llx bytes)",
			     i, (unsigned long long)e->gpa, (unsigned long long)e->len,
			     (unsigned long long)st->mem_size);
		if (i > 0 && e->gpa < prev_end)
			FAIL("memory extent %u (gpa 0x%llx) overlaps or precedes extent %u (ends at gpa 0x%llx)",
			     i, (unsigned long long)e->gpa, i - 1, (unsigned long long)prev_end);
		gend = e->gpa + e->len; /* gpa_in_ram checked the add */
		if (!add_ok(e->file_offset, e->len, &fend) || fend > file_size)
			FAIL("truncated: memory extent %u ends at 0x%llx, file is 0x%llx bytes", i,
			     (unsigned long long)(e->file_offset + e->len),
			     (unsigned long long)file_size);
		if (e->file_offset != next_file)
			FAIL("memory extent %u at file offset 0x%llx, expected 0x%llx (extents are contiguous)",
			     i, (unsigned long long)e->file_offset, (unsigned long long)next_file);
		next_file = fend;
		prev_end = gend;
	}
	if (next_file != mem_end)
		FAIL("memory extents hold 0x%llx bytes, the header says 0x%llx",
		     (unsigned long long)(next_file - img->mem_offset),
		     (unsigned long long)img->mem_data_size);
	if (file_size != mem_end)
		FAIL("%s: file is 0x%llx bytes, expected 0x%llx",
		     file_size < mem_end ? "truncated" : "trailing bytes",
		     (unsigned long long)file_size, (unsigned long long)mem_end);
	free(seen);
	return 0;
oom:
	hatch_err_set(err, E_INTERNAL, ENOMEM, "snapshot: parsing");
fail:
	free(seen);
	snap_image_free(img);
	return -1;
}

int snap_verify_memory(const struct snap_image *img, const uint8_t *file,
		       size_t file_len, struct hatch_err *err)
{
	for (uint32_t i = 0; i < img->nextents; i++) {
		const struct snap_extent *e = &img->ext[i];
		if (e->file_offset + e->len > file_len)
			return hatch_err_set(err, E_INVAL, 0,
					     "snapshot: truncated: memory extent %u ends at 0x%llx, file is 0x%zx bytes",
					     i, (unsigned long long)(e->file_offset + e->len), file_len);
		uint32_t crc = snap_crc32c(0, file + e->file_offset, e->len);
		if (crc != e->crc)
			return hatch_err_set(err, E_INVAL, 0,
					     "snapshot: memory extent %u (gpa 0x%llx) checksum mismatch (crc32c 0x%08x, stored 0x%08x)",
					     i, (unsigned long long)e->gpa, crc, e->crc);
	}
	return 0;
}
