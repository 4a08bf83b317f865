/* mem.h - the frontend's memory, as the vhost-user backend maps it.
 *
 * SET_MEM_TABLE and ADD_MEM_REG name regions of guest memory: a guest
 * physical range [gpa, gpa + size), the frontend's virtual address of its
 * first byte (uva: vring addresses are given as those), and an fd with the
 * offset of the region in it. Each region's fd is mapped MAP_SHARED here;
 * every address the frontend or the guest hands us goes through
 * vhu_mem_translate (guest physical) or vhu_mem_uva_* (frontend virtual)
 * and is refused unless the whole range lies inside one region.
 *
 * Checked when a region is added: size non-zero, no end past 2^64 (gpa,
 * uva, mmap_offset), a range the host can map (size_t), no gpa overlap
 * with a region already mapped, at most VHU_MEM_MAX_REGIONS, and an fd
 * that is a regular file (memfd, tmpfs, hugetlbfs) at least
 * mmap_offset + size long -- a mapping past the file's end would SIGBUS
 * on first touch. Not covered: a frontend that shrinks the file after we
 * mapped it (an unsealed memfd) can still make an access fault; see
 * docs/vhost.md.
 *
 * Ownership: struct vhu_mem owns its mappings (vhu_mem_clear unmaps
 * them). The fds passed in are not taken: the caller closes them (the
 * mapping outlives the fd). Pointers returned by the translations are
 * borrowed and valid until the region they are in is removed or the
 * table replaced.
 */
#ifndef HATCHERY_VHOST_MEM_H
#define HATCHERY_VHOST_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "user_msg.h"

#define VHU_MEM_MAX_REGIONS VHU_MAX_MEM_REGIONS

struct vhu_mem_map {
	struct vhu_mem_region r; /* as the frontend described it */
	uint8_t *map;            /* the mmap, from file offset 0 */
	size_t map_len;          /* r.mmap_offset + r.size */
	uint8_t *host;           /* map + r.mmap_offset: the region's first byte */
};

struct vhu_mem {
	unsigned n;
	struct vhu_mem_map m[VHU_MEM_MAX_REGIONS];
};

void vhu_mem_init(struct vhu_mem *mem);

/* Unmap every region. */
void vhu_mem_clear(struct vhu_mem *mem);

/* Check and map one region from fd (not taken). Returns 0, or -1 with
 * *err set (INVALID_ARGUMENT for a region that fails a check, INTERNAL
 * for a failed mmap); mem is unchanged then. */
int vhu_mem_add(struct vhu_mem *mem, const struct vhu_mem_region *r, int fd,
		struct hatch_err *err);

/* Remove the region with r's gpa, size and uva (mmap_offset is ignored,
 * as the spec says). Returns 0 or -1 with *err set (NOT_FOUND). */
int vhu_mem_remove(struct vhu_mem *mem, const struct vhu_mem_region *r,
		   struct hatch_err *err);

/* SET_MEM_TABLE: map all of t's regions (fds[i] for region i, not taken)
 * into a new table, then replace mem with it. All or nothing: on error
 * (-1, *err set) mem is unchanged. */
int vhu_mem_replace(struct vhu_mem *mem, const struct vhu_mem_table *t,
		    const int *fds, struct hatch_err *err);

/* Guest physical [gpa, gpa + len) -> host pointer, or NULL unless it is
 * wholly inside one region. len 0 asks for gpa itself inside a region.
 * Overflow-safe for every input. */
void *vhu_mem_translate(const struct vhu_mem *mem, uint64_t gpa, uint64_t len);

/* Frontend virtual [uva, uva + len) -> host pointer, the same rules. */
void *vhu_mem_uva_translate(const struct vhu_mem *mem, uint64_t uva, uint64_t len);

/* Frontend virtual -> guest physical, for [uva, uva + len) inside one
 * region. Returns 0 with *gpa set, or -1. */
int vhu_mem_uva_to_gpa(const struct vhu_mem *mem, uint64_t uva, uint64_t len,
		       uint64_t *gpa);

/* vhu_mem_translate in the shape of vmp_gpa_xlate_fn (opaque: a struct
 * vhu_mem *), for the split virtqueue code. */
void *vhu_mem_xlate(void *mem, uint64_t gpa, uint64_t len);

#endif
