/* write.c - the snapshot writer: snap_encode, snap_write_fd
 * (docs/snapshot.md). Pure: no KVM; the file is written with pwrite. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"

/* Everything before the memory data, built in memory, and the extents. */
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
	put32(h + SEC_TYPE, type);
	put32(h + SEC_INDEX, idx);
	put64(h + SEC_LEN, len);
	if (len)
		memcpy(h + SEC_HDR_SIZE, p, len);
	uint32_t crc = snap_crc32c(0, h, SEC_CRC);
	put32(h + SEC_CRC, snap_crc32c(crc, h + SEC_HDR_SIZE, len));
	put32(h + SEC_RESERVED, 0);
	m->len += SEC_HDR_SIZE + padded;
	m->nsections++;
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[SNAP_PAGE_SIZE];
	return memcmp(p, zero, SNAP_PAGE_SIZE) == 0;
}

static int add_extent(struct meta *m, uint32_t *cap, struct snap_extent e)
{
	if (m->next == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		struct snap_extent *x = realloc(m->ext, *cap * sizeof(*x));
		if (!x)
			return -1;
		m->ext = x;
	}
	m->ext[m->next++] = e;
	return 0;
}

/* Runs of non-zero pages, slot by slot: an extent never spans the MMIO
 * hole. File offsets are relative to mem_offset, fixed up later. */
static int find_extents(struct meta *m, const struct snap_state *s)
{
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned nslots = snap_ram_slots(s->mem_size, slot);
	uint32_t cap = 0;
	uint64_t file_off = 0;
	for (unsigned k = 0; k < nslots; k++) {
		const uint8_t *base = s->mem + slot[k].offset;
		uint64_t npages = slot[k].len / SNAP_PAGE_SIZE;
		for (uint64_t pg = 0; pg < npages;) {
			if (page_is_zero(base + pg * SNAP_PAGE_SIZE)) {
				pg++;
				continue;
			}
			uint64_t start = pg;
			while (pg < npages && !page_is_zero(base + pg * SNAP_PAGE_SIZE))
				pg++;
			uint64_t off = start * SNAP_PAGE_SIZE, len = (pg - start) * SNAP_PAGE_SIZE;
			struct snap_extent e = {
				.gpa = slot[k].gpa + off, .len = len, .file_offset = file_off,
				.crc = snap_crc32c(0, base + off, len),
			};
			if (add_extent(m, &cap, e) < 0)
				return -1;
			file_off += len;
		}
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
	if (!s->runtime == !s->devices)
		return hatch_err_set(err, E_INVAL, 0,
				     "snapshot: %s; a snapshot has exactly one of runtime state (a kernel-less guest) and devices (a Linux guest)",
				     s->runtime ? "both runtime state and devices" : "neither runtime state nor devices");
	if (s->runtime && s->runtime_len > SNAP_MAX_OPAQUE)
		return hatch_err_set(err, E_INVAL, 0, "snapshot: runtime state of %u bytes, at most %u",
				     s->runtime_len, SNAP_MAX_OPAQUE);
	/* What the parser would refuse, refused here: a file this build
	 * writes is one it reads. */
	if (s->devices && snap_devices_check(s->devices, s->mem_size, err) < 0)
		return -1;
	return 0;
}

/* Every section but the memory map, in the order of docs/snapshot.md. */
static int put_state_sections(struct meta *m, const struct snap_state *s)
{
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
	if (s->runtime)
		r |= put_sec(m, SEC_RUNTIME, 0, s->runtime, s->runtime_len);
	if (s->devices) {
		uint8_t dev[DEV_LEN(SNAP_MAX_VIRTIO)]; /* check_state bounded nvirtio */
		snap_devices_encode(s->devices, dev);
		r |= put_sec(m, SEC_DEVICES, 0, dev, DEV_LEN(s->devices->nvirtio));
	}
	return r;
}

/* The memory map, last; returns the memory data's offset, or 0 (no
 * memory). Its own length is known before the file offsets are: the data
 * starts at the first page boundary after it. */
static uint64_t put_memmap(struct meta *m)
{
	uint64_t sections_end = m->len + SEC_HDR_SIZE + (uint64_t)m->next * EXT_SIZE;
	uint64_t mem_offset = align_up(sections_end, SNAP_PAGE_SIZE);
	uint8_t *ents = calloc(m->next ? m->next : 1, EXT_SIZE);
	if (!ents)
		return 0;
	for (uint32_t i = 0; i < m->next; i++) {
		struct snap_extent *e = &m->ext[i];
		e->file_offset += mem_offset;
		uint8_t *p = ents + (size_t)i * EXT_SIZE;
		put64(p + EXT_GPA, e->gpa);
		put64(p + EXT_LEN, e->len);
		put64(p + EXT_FILE_OFFSET, e->file_offset);
		put32(p + EXT_CRC, e->crc);
		put32(p + EXT_RESERVED, 0);
	}
	int r = put_sec(m, SEC_MEMMAP, 0, ents, (size_t)m->next * EXT_SIZE);
	free(ents);
	return r < 0 ? 0 : mem_offset;
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
	if (put_state_sections(m, s) || find_extents(m, s) < 0)
		goto oom;
	uint64_t mem_offset = put_memmap(m);
	if (!mem_offset || meta_grow(m, mem_offset - m->len) < 0)
		goto oom;
	struct snap_header h = {
		.version = SNAP_VERSION,
		.cpu = s->cpu,
		.mem_size = s->mem_size,
		.nvcpus = s->nvcpus,
		.nsections = m->nsections,
		.sections_offset = HDR_SIZE,
		.sections_size = m->len - HDR_SIZE,
		.mem_offset = mem_offset,
		.mem_data_size = m->mem_data_size,
		.file_size = mem_offset + m->mem_data_size,
	};
	m->len = mem_offset; /* the padding is zero: meta_grow zeroes */
	snap_header_encode(m->buf, &h);
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
	for (uint32_t i = 0; i < m.next; i++)
		memcpy(b + m.ext[i].file_offset, s->mem + snap_gpa_to_ram_offset(m.ext[i].gpa),
		       m.ext[i].len);
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
		const uint8_t *src = s->mem + snap_gpa_to_ram_offset(m.ext[i].gpa);
		if (pwrite_all(fd, src, m.ext[i].len, m.ext[i].file_offset) < 0) {
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
