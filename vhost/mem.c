/* mem.c - the frontend's memory regions: see mem.h. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "hatchery/v1/common.pb-c.h"
#include "mem.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

void vhu_mem_init(struct vhu_mem *mem)
{
	memset(mem, 0, sizeof(*mem));
}

static void unmap_one(struct vhu_mem_map *m)
{
	if (m->map)
		munmap(m->map, m->map_len);
	memset(m, 0, sizeof(*m));
}

void vhu_mem_clear(struct vhu_mem *mem)
{
	for (unsigned i = 0; i < mem->n; i++)
		unmap_one(&mem->m[i]);
	mem->n = 0;
}

/* [start, start + size) inside [base, base + len)? Compared as offsets
 * from base, so nothing is ever summed past 2^64. */
static void *inside(uint64_t start, uint64_t size, uint64_t base, uint64_t len,
		    uint8_t *host)
{
	if (start < base || start - base >= len)
		return NULL;
	uint64_t off = start - base;
	if (size > len - off)
		return NULL;
	return host + off;
}

void *vhu_mem_translate(const struct vhu_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->n; i++) {
		const struct vhu_mem_map *m = &mem->m[i];
		void *p = inside(gpa, len, m->r.gpa, m->r.size, m->host);
		if (p)
			return p;
	}
	return NULL;
}

static const struct vhu_mem_map *uva_region(const struct vhu_mem *mem,
					    uint64_t uva, uint64_t len)
{
	for (unsigned i = 0; i < mem->n; i++) {
		const struct vhu_mem_map *m = &mem->m[i];
		if (inside(uva, len, m->r.uva, m->r.size, m->host))
			return m;
	}
	return NULL;
}

void *vhu_mem_uva_translate(const struct vhu_mem *mem, uint64_t uva, uint64_t len)
{
	const struct vhu_mem_map *m = uva_region(mem, uva, len);
	return m ? m->host + (uva - m->r.uva) : NULL;
}

int vhu_mem_uva_to_gpa(const struct vhu_mem *mem, uint64_t uva, uint64_t len,
		       uint64_t *gpa)
{
	const struct vhu_mem_map *m = uva_region(mem, uva, len);
	if (!m)
		return -1;
	*gpa = m->r.gpa + (uva - m->r.uva);
	return 0;
}

void *vhu_mem_xlate(void *mem, uint64_t gpa, uint64_t len)
{
	return vhu_mem_translate(mem, gpa, len);
}

/* ---- adding regions ---------------------------------------------------- */

static int check_region(const struct vhu_mem *mem, const struct vhu_mem_region *r,
			struct hatch_err *err)
{
	if (r->size == 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "memory region of size 0");
	if (r->gpa + r->size < r->gpa || r->uva + r->size < r->uva ||
	    r->mmap_offset + r->size < r->mmap_offset ||
	    r->mmap_offset + r->size > SIZE_MAX)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "memory region 0x%llx+0x%llx (uva 0x%llx, offset "
				     "0x%llx) runs past the end of the address space",
				     (unsigned long long)r->gpa, (unsigned long long)r->size,
				     (unsigned long long)r->uva,
				     (unsigned long long)r->mmap_offset);
	if (mem->n >= VHU_MEM_MAX_REGIONS)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "more than %u memory regions", VHU_MEM_MAX_REGIONS);
	for (unsigned i = 0; i < mem->n; i++) {
		const struct vhu_mem_region *o = &mem->m[i].r;
		if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
			return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
					     "memory region at 0x%llx overlaps one at 0x%llx",
					     (unsigned long long)r->gpa,
					     (unsigned long long)o->gpa);
	}
	return 0;
}

/* A mapping past the end of the file would SIGBUS when touched. */
static int check_fd(int fd, uint64_t need, struct hatch_err *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "memory region fd");
	if (!S_ISREG(st.st_mode))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "memory region fd is not a regular file (memfd, tmpfs)");
	if ((uint64_t)st.st_size < need)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "memory region needs 0x%llx bytes of its fd, which has 0x%llx",
				     (unsigned long long)need, (unsigned long long)st.st_size);
	return 0;
}

int vhu_mem_add(struct vhu_mem *mem, const struct vhu_mem_region *r, int fd,
		struct hatch_err *err)
{
	if (check_region(mem, r, err) < 0)
		return -1;
	size_t len = (size_t)(r->mmap_offset + r->size);
	if (check_fd(fd, len, err) < 0)
		return -1;
	/* From offset 0: mmap_offset need not be page-aligned. */
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return hatch_err_set(err, E(INTERNAL), errno,
				     "mmap of a 0x%zx-byte memory region", len);
	struct vhu_mem_map *m = &mem->m[mem->n++];
	m->r = *r;
	m->map = p;
	m->map_len = len;
	m->host = (uint8_t *)p + r->mmap_offset;
	return 0;
}

int vhu_mem_remove(struct vhu_mem *mem, const struct vhu_mem_region *r,
		   struct hatch_err *err)
{
	for (unsigned i = 0; i < mem->n; i++) {
		struct vhu_mem_map *m = &mem->m[i];
		if (m->r.gpa != r->gpa || m->r.size != r->size || m->r.uva != r->uva)
			continue;
		unmap_one(m);
		mem->m[i] = mem->m[--mem->n];
		memset(&mem->m[mem->n], 0, sizeof(mem->m[mem->n]));
		return 0;
	}
	return hatch_err_set(err, E(NOT_FOUND), 0,
			     "no memory region 0x%llx+0x%llx to remove",
			     (unsigned long long)r->gpa, (unsigned long long)r->size);
}

int vhu_mem_replace(struct vhu_mem *mem, const struct vhu_mem_table *t,
		    const int *fds, struct hatch_err *err)
{
	struct vhu_mem next;
	vhu_mem_init(&next);
	if (t->nregions > VHU_MEM_MAX_REGIONS)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "%u memory regions",
				     t->nregions);
	for (unsigned i = 0; i < t->nregions; i++) {
		if (vhu_mem_add(&next, &t->regions[i], fds[i], err) < 0) {
			vhu_mem_clear(&next);
			return hatch_err_wrap(err, "region %u", i);
		}
	}
	vhu_mem_clear(mem);
	*mem = next;
	return 0;
}
