/* guest_elf.c - the guest ELF's validation. See guest_elf.h. */
#include <elf.h>
#include <string.h>

#include "hatchery/v1/common.pb-c.h"
#include "hatchery_guest_abi.h"
#include "runtime/guest_elf.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define PAGE 4096ull

static bool add_overflows(uint64_t a, uint64_t b, uint64_t *sum)
{
	return __builtin_add_overflow(a, b, sum);
}

int vmp_guest_elf_parse(const uint8_t *elf, size_t len,
			struct vmp_guest_image *img, struct hatch_err *err)
{
	memset(img, 0, sizeof(*img));
	const int EINV = E(INVALID_ARGUMENT);
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return hatch_err_set(err, EINV, 0, "guest ELF: %zu bytes, shorter than an ELF header", len);
	if (len > VMP_GUEST_MAX_ELF)
		return hatch_err_set(err, EINV, 0, "guest ELF: %zu bytes, more than %u", len, VMP_GUEST_MAX_ELF);
	memcpy(&eh, elf, sizeof(eh)); /* the buffer need not be aligned */
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return hatch_err_set(err, EINV, 0, "guest ELF: bad magic");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_ident[EI_VERSION] != EV_CURRENT)
		return hatch_err_set(err, EINV, 0, "guest ELF: not a little-endian ELF64 (version 1)");
	if (eh.e_machine != EM_X86_64)
		return hatch_err_set(err, EINV, 0, "guest ELF: machine %u, not x86-64", eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return hatch_err_set(err, EINV, 0, "guest ELF: type %u, need ET_EXEC (a static, non-PIE executable)", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr))
		return hatch_err_set(err, EINV, 0, "guest ELF: e_phentsize %u, need %zu", eh.e_phentsize, sizeof(Elf64_Phdr));
	if (eh.e_phnum == 0 || eh.e_phnum > 64)
		return hatch_err_set(err, EINV, 0, "guest ELF: %u program headers, need 1..64", eh.e_phnum);
	uint64_t ph_end;
	if (add_overflows(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), &ph_end) || ph_end > len)
		return hatch_err_set(err, EINV, 0, "guest ELF: program headers outside the file");

	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, elf + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
			return hatch_err_set(err, EINV, 0, "guest ELF: dynamic executables are not supported (segment %u)", i);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (img->nsegs == VMP_GUEST_MAX_SEGS)
			return hatch_err_set(err, EINV, 0, "guest ELF: more than %d PT_LOAD segments", VMP_GUEST_MAX_SEGS);
		uint64_t fend, vend;
		if (ph.p_filesz > ph.p_memsz)
			return hatch_err_set(err, EINV, 0, "guest ELF: segment %u: p_filesz %#llx > p_memsz %#llx",
					     i, (unsigned long long)ph.p_filesz, (unsigned long long)ph.p_memsz);
		if (add_overflows(ph.p_offset, ph.p_filesz, &fend) || fend > len)
			return hatch_err_set(err, EINV, 0, "guest ELF: segment %u: file bytes outside the file", i);
		if (add_overflows(ph.p_vaddr, ph.p_memsz, &vend) ||
		    ph.p_vaddr < HATCH_IMAGE_BASE || vend > HATCH_IMAGE_END)
			return hatch_err_set(err, EINV, 0,
					     "guest ELF: segment %u at %#llx..%#llx is outside the image window %#llx..%#llx",
					     i, (unsigned long long)ph.p_vaddr, (unsigned long long)vend,
					     (unsigned long long)HATCH_IMAGE_BASE, (unsigned long long)HATCH_IMAGE_END);
		bool w = ph.p_flags & PF_W, x = ph.p_flags & PF_X;
		if (w && x)
			return hatch_err_set(err, EINV, 0, "guest ELF: segment %u is writable and executable", i);
		/* Permissions are per page: two segments on one page would
		 * merge them. The SDK's linker script page-aligns each. */
		uint64_t lo = ph.p_vaddr & ~(PAGE - 1), hi = (vend + PAGE - 1) & ~(PAGE - 1);
		for (unsigned j = 0; j < img->nsegs; j++) {
			const struct vmp_guest_seg *o = &img->seg[j];
			uint64_t olo = o->vaddr & ~(PAGE - 1);
			uint64_t ohi = (o->vaddr + o->memsz + PAGE - 1) & ~(PAGE - 1);
			if (lo < ohi && olo < hi)
				return hatch_err_set(err, EINV, 0, "guest ELF: segments %u and %u share a page", j, img->nsegs);
		}
		img->seg[img->nsegs++] = (struct vmp_guest_seg){
			.vaddr = ph.p_vaddr, .memsz = ph.p_memsz,
			.offset = ph.p_offset, .filesz = ph.p_filesz,
			.write = w, .exec = x,
		};
	}
	if (img->nsegs == 0)
		return hatch_err_set(err, EINV, 0, "guest ELF: no PT_LOAD segment");
	bool entry_ok = false;
	for (unsigned j = 0; j < img->nsegs; j++) {
		const struct vmp_guest_seg *s = &img->seg[j];
		if (s->exec && eh.e_entry >= s->vaddr && eh.e_entry < s->vaddr + s->memsz)
			entry_ok = true;
	}
	if (!entry_ok)
		return hatch_err_set(err, EINV, 0, "guest ELF: entry point %#llx is not in an executable segment",
				     (unsigned long long)eh.e_entry);
	img->elf = elf;
	img->elf_len = len;
	img->entry = eh.e_entry;
	return 0;
}
