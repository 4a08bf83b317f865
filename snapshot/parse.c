/* parse.c - the snapshot parser (docs/snapshot.md): snap_parse in steps
 * (header, fit, sections, memory map), snap_parse_fd, snap_verify_memory,
 * snap_image_free. Nothing is returned before everything is checked; every
 * length is bounded with overflow-checked arithmetic before it is read.
 * Pure: no KVM. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "layout.h"

#define FAIL(...) hatch_err_set(err, E_INVAL, 0, "snapshot: " __VA_ARGS__)
#define OOM() hatch_err_set(err, E_INTERNAL, ENOMEM, "snapshot: parsing")

/* One parse: the input and what the steps found so far. */
struct parse {
	const uint8_t *buf;
	size_t buf_len;
	uint64_t file_size;
	struct snap_header h;
	uint64_t sec_end;        /* sections_offset + sections_size */
	uint8_t *seen;           /* per vCPU, then the VM's: a section appeared */
	const uint8_t *memmap;   /* the memory map section's payload */
	uint64_t memmap_len;
};

/* A section's header, bounded and checksummed. */
struct section {
	uint32_t n, type, idx;
	uint64_t len;
	const uint8_t *p;        /* the payload */
	char nm[48];             /* "vcpu0 sregs", for messages */
};

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

/* ---- step 2: fit ------------------------------------------------------
 * Against the shell and the host: a sound snapshot that does not fit. */
static int check_fit(const struct snap_header *h, const struct snap_expect *want,
		     struct hatch_err *err)
{
	if (!want)
		return 0;
	const char *what = NULL;
	if (h->nvcpus != want->nvcpus)
		what = "vcpus";
	else if (h->mem_size != want->mem_size)
		what = "memory";
	if (what)
		return hatch_err_set(err, E_PRECOND, 0,
				     "snapshot: %u vcpus and 0x%llx bytes of memory; this VM has %u vcpus and 0x%llx bytes (%s differ)",
				     h->nvcpus, (unsigned long long)h->mem_size, want->nvcpus,
				     (unsigned long long)want->mem_size, what);
	if (memcmp(h->cpu.vendor, want->cpu.vendor, sizeof(h->cpu.vendor)) != 0)
		return hatch_err_set(err, E_PRECOND, 0, "snapshot: taken on a %.12s CPU, this host is %.12s",
				     h->cpu.vendor, want->cpu.vendor);
	if (h->cpu.signature != want->cpu.signature)
		return hatch_err_set(err, E_PRECOND, 0,
				     "snapshot: taken on CPU signature 0x%x (family/model/stepping), this host is 0x%x",
				     h->cpu.signature, want->cpu.signature);
	if (h->cpu.cpuid_hash != want->cpu.cpuid_hash)
		return hatch_err_set(err, E_PRECOND, 0,
				     "snapshot: supported-CPUID hash 0x%016llx, this host's is 0x%016llx (CPU features differ)",
				     (unsigned long long)h->cpu.cpuid_hash,
				     (unsigned long long)want->cpu.cpuid_hash);
	return 0;
}

/* ---- step 3: sections -------------------------------------------------- */

/* The header and sections are in the buffer, and the padding after the
 * sections is zero. */
static int check_meta_in_buf(const struct parse *ps, struct hatch_err *err)
{
	if (ps->buf_len < ps->h.mem_offset)
		return FAIL("truncated: sections end at 0x%llx, file is 0x%zx bytes",
			    (unsigned long long)ps->h.mem_offset, ps->buf_len);
	for (uint64_t i = ps->sec_end; i < ps->h.mem_offset; i++)
		if (ps->buf[i])
			return FAIL("padding byte at 0x%llx before the memory data is not zero",
				    (unsigned long long)i);
	return 0;
}

/* The section at *off: bounded by the sections' end, checksummed, its
 * padding zero; *off moves past it. */
static int read_section(const struct parse *ps, uint32_t n, uint64_t *off,
			struct section *s, struct hatch_err *err)
{
	uint64_t body, end, padded;
	s->n = n;
	if (!add_ok(*off, SEC_HDR_SIZE, &body) || body > ps->sec_end)
		return FAIL("section %u header at 0x%llx runs past the sections' end 0x%llx", n,
			    (unsigned long long)*off, (unsigned long long)ps->sec_end);
	const uint8_t *h = ps->buf + *off;
	s->type = get32(h + SEC_TYPE);
	s->idx = get32(h + SEC_INDEX);
	s->len = get64(h + SEC_LEN);
	snap_sec_name(s->nm, sizeof(s->nm), s->type, s->idx);
	if (!add_ok(body, s->len, &end) || !add_ok(end, SEC_ALIGN - 1, &padded) ||
	    (padded &= ~(uint64_t)(SEC_ALIGN - 1)) > ps->sec_end)
		return FAIL("section %u (%s) length 0x%llx runs past the sections' end 0x%llx", n,
			    s->nm, (unsigned long long)s->len, (unsigned long long)ps->sec_end);
	s->p = ps->buf + body;
	uint32_t crc = snap_crc32c(snap_crc32c(0, h, SEC_CRC), s->p, (size_t)s->len);
	if (CRC_BAD(crc, get32(h + SEC_CRC)))
		return FAIL("section %u (%s) checksum mismatch (crc32c 0x%08x, stored 0x%08x)", n,
			    s->nm, crc, get32(h + SEC_CRC));
	if (get32(h + SEC_RESERVED))
		return FAIL("section %u (%s) reserved field is not zero", n, s->nm);
	for (uint64_t i = end; i < padded; i++)
		if (ps->buf[i])
			return FAIL("section %u (%s) padding is not zero", n, s->nm);
	*off = padded;
	return 0;
}

static uint8_t *seen_slot(struct parse *ps, uint32_t type, uint32_t idx)
{
	if (snap_sec_is_vcpu(type))
		return &ps->seen[(size_t)idx * (SEC_VCPU_LAST + 1) + type];
	return &ps->seen[(size_t)ps->h.nvcpus * (SEC_VCPU_LAST + 1) + type];
}

/* A known type, for an existing vCPU, seen once, of its length. */
static int check_section(struct parse *ps, const struct section *s, struct hatch_err *err)
{
	const struct sec_info *si = snap_sec_info(s->type);
	if (!si)
		return FAIL("section %u has unknown type %u", s->n, s->type);
	if (snap_sec_is_vcpu(s->type) && s->idx >= ps->h.nvcpus)
		return FAIL("section %u (%s) for vcpu %u, the snapshot has %u", s->n, s->nm, s->idx,
			    ps->h.nvcpus);
	if (!snap_sec_is_vcpu(s->type) && s->idx)
		return FAIL("section %u (%s) index %u, expected 0", s->n, s->nm, s->idx);
	uint8_t *seenp = seen_slot(ps, s->type, s->idx);
	if (*seenp)
		return FAIL("section %u (%s) appears twice", s->n, s->nm);
	*seenp = 1;
	if (si->struct_name && s->len != si->size)
		return FAIL("section %u (%s) length %llu, expected %zu (%s)", s->n, s->nm,
			    (unsigned long long)s->len, si->size, si->struct_name);
	if (!si->struct_name && s->len % si->size)
		return FAIL("section %u (%s) length %llu is not a multiple of %zu", s->n, s->nm,
			    (unsigned long long)s->len, si->size);
	return 0;
}

/* The variable-length sections: bounded, then copied into the image. */
static int store_variable(struct parse *ps, struct snap_state *st, const struct section *s,
			  struct hatch_err *err)
{
	struct snap_vcpu *v = snap_sec_is_vcpu(s->type) ? &st->vcpu[s->idx] : NULL;
	switch (s->type) {
	case SEC_VCPU_XSAVE:
		if (s->len < sizeof(struct kvm_xsave) || s->len > SNAP_MAX_XSAVE)
			return FAIL("section %u (%s) length %llu, expected %zu..%u (struct kvm_xsave)",
				    s->n, s->nm, (unsigned long long)s->len,
				    sizeof(struct kvm_xsave), SNAP_MAX_XSAVE);
		if (!(v->xsave = dup_bytes(s->p, s->len)))
			return OOM();
		v->xsave_len = (uint32_t)s->len;
		return 0;
	case SEC_VCPU_MSRS: {
		uint64_t n = s->len / sizeof(struct kvm_msr_entry);
		if (n > SNAP_MAX_MSRS)
			return FAIL("section %u (%s) has %llu MSRs, at most %d", s->n, s->nm,
				    (unsigned long long)n, SNAP_MAX_MSRS);
		if (!(v->msrs = dup_bytes(s->p, s->len)))
			return OOM();
		v->nmsrs = (uint32_t)n;
		return 0;
	}
	case SEC_RUNTIME:
		if (s->len > SNAP_MAX_OPAQUE)
			return FAIL("section %u (%s) length %llu, at most %u", s->n, s->nm,
				    (unsigned long long)s->len, SNAP_MAX_OPAQUE);
		if (!(st->runtime = dup_bytes(s->p, s->len)))
			return OOM();
		st->runtime_len = (uint32_t)s->len;
		return 0;
	case SEC_DEVICES: {
		/* Decoded and checked here, whole: the image holds the struct. */
		struct snap_devices *d = malloc(sizeof(*d));
		if (!d)
			return OOM();
		st->devices = d;
		return snap_devices_decode(s->p, s->len, ps->h.mem_size, d, err);
	}
	case SEC_MEMMAP:
		ps->memmap = s->p;
		ps->memmap_len = s->len;
		return 0;
	}
	return 0;
}

/* A checked section into the image. Fixed-size payloads were checked
 * against their struct's size by check_section. */
static int store_section(struct parse *ps, struct snap_state *st, const struct section *s,
			 struct hatch_err *err)
{
	struct snap_vcpu *v = snap_sec_is_vcpu(s->type) ? &st->vcpu[s->idx] : NULL;
	const uint8_t *p = s->p;
	switch (s->type) {
	case SEC_VCPU_REGS: memcpy(&v->regs, p, s->len); break;
	case SEC_VCPU_SREGS: memcpy(&v->sregs, p, s->len); break;
	case SEC_VCPU_FPU: memcpy(&v->fpu, p, s->len); break;
	case SEC_VCPU_XCRS: memcpy(&v->xcrs, p, s->len); v->has_xcrs = true; break;
	case SEC_VCPU_LAPIC: memcpy(&v->lapic, p, s->len); break;
	case SEC_VCPU_MP_STATE: memcpy(&v->mp, p, s->len); break;
	case SEC_VCPU_EVENTS: memcpy(&v->events, p, s->len); break;
	case SEC_VCPU_DEBUGREGS: memcpy(&v->debugregs, p, s->len); break;
	case SEC_VCPU_TSC: memcpy(&v->tsc, p, s->len); break;
	case SEC_VM_PIC_MASTER:
	case SEC_VM_PIC_SLAVE:
	case SEC_VM_IOAPIC: {
		struct kvm_irqchip *c = s->type == SEC_VM_PIC_MASTER ? &st->vm.pic_master :
					s->type == SEC_VM_PIC_SLAVE ? &st->vm.pic_slave : &st->vm.ioapic;
		memcpy(c, p, s->len);
		uint32_t want_id = s->type - SEC_VM_PIC_MASTER; /* KVM_IRQCHIP_* */
		if (c->chip_id != want_id)
			return FAIL("section %u (%s) chip_id %u, expected %u", s->n, s->nm,
				    c->chip_id, want_id);
		break;
	}
	case SEC_VM_PIT2: memcpy(&st->vm.pit, p, s->len); break;
	case SEC_VM_CLOCK: memcpy(&st->vm.clock, p, s->len); break;
	default:
		return store_variable(ps, st, s, err);
	}
	return 0;
}

/* Every required section is there, and exactly one of runtime (a
 * kernel-less guest) and devices (a Linux guest). */
static int check_complete(struct parse *ps, struct hatch_err *err)
{
	char nm[48];
	bool runtime = *seen_slot(ps, SEC_RUNTIME, 0), devices = *seen_slot(ps, SEC_DEVICES, 0);
	if (runtime && devices)
		return FAIL("both a runtime section (a kernel-less guest) and a devices section (a Linux guest); a snapshot has exactly one");
	if (!runtime && !devices)
		return FAIL("neither a runtime section (a kernel-less guest) nor a devices section (a Linux guest); a snapshot has exactly one");
	for (uint32_t i = 0; i < ps->h.nvcpus; i++)
		for (uint32_t t = SEC_VCPU_REGS; t <= SEC_VCPU_LAST; t++)
			if (!snap_sec_info(t)->optional && !*seen_slot(ps, t, i))
				return FAIL("section %s missing", snap_sec_name(nm, sizeof(nm), t, i));
	for (uint32_t t = SEC_VM_PIC_MASTER; t <= SEC_VM_LAST; t++) {
		const struct sec_info *si = snap_sec_info(t);
		if (si && !si->optional && !*seen_slot(ps, t, 0))
			return FAIL("section %s missing", snap_sec_name(nm, sizeof(nm), t, 0));
	}
	return 0;
}

/* Sections: every one bounded and checksummed before it is read. */
static int parse_sections(struct parse *ps, struct snap_image *img, struct hatch_err *err)
{
	struct snap_state *st = &img->st;
	st->vcpu = calloc(ps->h.nvcpus, sizeof(*st->vcpu));
	ps->seen = calloc((size_t)ps->h.nvcpus * (SEC_VCPU_LAST + 1) + SEC_VM_LAST + 1, 1);
	if (!st->vcpu || !ps->seen)
		return OOM();
	uint64_t off = ps->h.sections_offset;
	for (uint32_t n = 0; n < ps->h.nsections; n++) {
		struct section s;
		if (read_section(ps, n, &off, &s, err) < 0 || check_section(ps, &s, err) < 0 ||
		    store_section(ps, st, &s, err) < 0)
			return -1;
	}
	if (off != ps->sec_end)
		return FAIL("%u sections end at 0x%llx, the header says 0x%llx", ps->h.nsections,
			    (unsigned long long)off, (unsigned long long)ps->sec_end);
	return check_complete(ps, err);
}

/* ---- step 4: the memory map --------------------------------------------
 * Sorted by GPA, inside guest RAM, contiguous in the file from mem_offset,
 * and the file exactly as long as the header says. */
static int parse_memmap(const struct parse *ps, struct snap_image *img, struct hatch_err *err)
{
	img->nextents = (uint32_t)(ps->memmap_len / EXT_SIZE);
	img->ext = calloc(img->nextents ? img->nextents : 1, sizeof(*img->ext));
	if (!img->ext)
		return OOM();
	uint64_t next_file = ps->h.mem_offset, prev_end = 0, mem_end = ps->h.file_size;
	for (uint32_t i = 0; i < img->nextents; i++) {
		const uint8_t *p = ps->memmap + (size_t)i * EXT_SIZE;
		struct snap_extent *e = &img->ext[i];
		e->gpa = get64(p + EXT_GPA);
		e->len = get64(p + EXT_LEN);
		e->file_offset = get64(p + EXT_FILE_OFFSET);
		e->crc = get32(p + EXT_CRC);
		uint64_t fend;
		if (get32(p + EXT_RESERVED))
			return FAIL("memory extent %u reserved field is not zero", i);
		if (e->len == 0 || e->gpa % SNAP_PAGE_SIZE || e->len % SNAP_PAGE_SIZE ||
		    e->file_offset % SNAP_PAGE_SIZE)
			return FAIL("memory extent %u (gpa 0x%llx, length 0x%llx, file offset 0x%llx) is not page-aligned",
				    i, (unsigned long long)e->gpa, (unsigned long long)e->len,
				    (unsigned long long)e->file_offset);
		if (!snap_gpa_in_ram(ps->h.mem_size, e->gpa, e->len))
			return FAIL("memory extent %u (gpa 0x%llx, length 0x%llx) is outside guest RAM (0x%llx bytes)",
				    i, (unsigned long long)e->gpa, (unsigned long long)e->len,
				    (unsigned long long)ps->h.mem_size);
		if (i > 0 && e->gpa < prev_end)
			return FAIL("memory extent %u (gpa 0x%llx) overlaps or precedes extent %u (ends at gpa 0x%llx)",
				    i, (unsigned long long)e->gpa, i - 1, (unsigned long long)prev_end);
		if (!add_ok(e->file_offset, e->len, &fend) || fend > ps->file_size)
			return FAIL("truncated: memory extent %u ends at 0x%llx, file is 0x%llx bytes", i,
				    (unsigned long long)(e->file_offset + e->len),
				    (unsigned long long)ps->file_size);
		if (e->file_offset != next_file)
			return FAIL("memory extent %u at file offset 0x%llx, expected 0x%llx (extents are contiguous)",
				    i, (unsigned long long)e->file_offset, (unsigned long long)next_file);
		next_file = fend;
		prev_end = e->gpa + e->len; /* snap_gpa_in_ram checked the add */
	}
	if (next_file != mem_end)
		return FAIL("memory extents hold 0x%llx bytes, the header says 0x%llx",
			    (unsigned long long)(next_file - ps->h.mem_offset),
			    (unsigned long long)ps->h.mem_data_size);
	if (ps->file_size != mem_end)
		return FAIL("%s: file is 0x%llx bytes, expected 0x%llx",
			    ps->file_size < mem_end ? "truncated" : "trailing bytes",
			    (unsigned long long)ps->file_size, (unsigned long long)mem_end);
	return 0;
}

int snap_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size,
	       const struct snap_expect *want, struct snap_image *img,
	       struct hatch_err *err)
{
	memset(img, 0, sizeof(*img));
	struct parse ps = { .buf = buf, .buf_len = buf_len, .file_size = file_size };
	if (ps.buf_len > file_size)
		ps.buf_len = (size_t)file_size;
	int r = -1;
	if (snap_header_peek(buf, ps.buf_len, &ps.h, err) < 0 || check_fit(&ps.h, want, err) < 0)
		goto out;
	ps.sec_end = ps.h.sections_offset + ps.h.sections_size; /* checked by the peek */
	img->st.cpu = ps.h.cpu;
	img->st.mem_size = ps.h.mem_size;
	img->st.nvcpus = ps.h.nvcpus;
	img->mem_offset = ps.h.mem_offset;
	img->mem_data_size = ps.h.mem_data_size;
	img->file_size = file_size;
	img->header_crc = ps.h.crc;
	if (check_meta_in_buf(&ps, err) < 0 || parse_sections(&ps, img, err) < 0 ||
	    parse_memmap(&ps, img, err) < 0)
		goto out;
	r = 0;
out:
	free(ps.seen);
	if (r < 0)
		snap_image_free(img);
	return r;
}

int snap_parse_fd(int fd, const struct snap_expect *want, struct snap_image *img,
		  struct hatch_err *err)
{
	memset(img, 0, sizeof(*img));
	struct snap_header h;
	uint64_t fsize;
	if (snap_header_read_fd(fd, &h, &fsize, err) < 0)
		return -1;
	/* The header and sections only: the memory data is for the caller to
	 * map. The peek bounded mem_offset; a file shorter than that is mapped
	 * whole, and snap_parse calls it truncated. */
	size_t view = (size_t)(h.mem_offset < fsize ? h.mem_offset : fsize);
	void *p = mmap(NULL, view, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return hatch_err_set(err, E_INVAL, errno, "snapshot: mmap the header and sections");
	int r = snap_parse(p, view, fsize, want, img, err);
	munmap(p, view);
	return r;
}

int snap_verify_memory(const struct snap_image *img, const uint8_t *file,
		       size_t file_len, struct hatch_err *err)
{
	for (uint32_t i = 0; i < img->nextents; i++) {
		const struct snap_extent *e = &img->ext[i];
		if (e->file_offset + e->len > file_len)
			return FAIL("truncated: memory extent %u ends at 0x%llx, file is 0x%zx bytes",
				    i, (unsigned long long)(e->file_offset + e->len), file_len);
		uint32_t crc = snap_crc32c(0, file + e->file_offset, e->len);
		if (crc != e->crc)
			return FAIL("memory extent %u (gpa 0x%llx) checksum mismatch (crc32c 0x%08x, stored 0x%08x)",
				    i, (unsigned long long)e->gpa, crc, e->crc);
	}
	return 0;
}
