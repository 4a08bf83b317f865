/* bzimage.c - validate a bzImage's setup header. See bzimage.h. */
#include <string.h>

#include "hatchery/v1/common.pb-c.h"
#include "linux/bzimage.h"

#define E_ARG HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

int vmp_bzimage_parse(const uint8_t *img, size_t len, struct vmp_bzimage *bz,
		      struct hatch_err *err)
{
	memset(bz, 0, sizeof(*bz));
	/* Every field read below lies before VMP_BZ_INIT_SIZE + 4; the
	 * header's own length is checked against that once it is known. */
	if (!img || len < VMP_BZ_INIT_SIZE + 4)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: %zu bytes, too short for a setup header", len);
	if (memcmp(img + VMP_BZ_HEADER, "HdrS", 4) != 0)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: no \"HdrS\" magic at 0x202: not a Linux bzImage");
	if (rd16(img + VMP_BZ_BOOT_FLAG) != 0xaa55)
		return hatch_err_set(err, E_ARG, 0, "bzImage: boot_flag is %#x, not 0xaa55",
				     rd16(img + VMP_BZ_BOOT_FLAG));
	bz->version = rd16(img + VMP_BZ_VERSION);
	if (bz->version < VMP_BZ_MIN_VERSION)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: boot protocol %u.%02u, need 2.12 or later (xloadflags)",
				     bz->version >> 8, bz->version & 0xff);
	/* The header's length is the jump's 8-bit displacement (boot.rst:
	 * "0x0202 + byte value at offset 0x0201"). */
	bz->hdr_end = VMP_BZ_JUMP + 2 + img[VMP_BZ_JUMP + 1];
	if (bz->hdr_end < VMP_BZ_INIT_SIZE + 4 || bz->hdr_end > VMP_BZ_HDR_LIMIT)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: setup header ends at %#x, outside [%#x, %#x]",
				     bz->hdr_end, VMP_BZ_INIT_SIZE + 4, VMP_BZ_HDR_LIMIT);

	unsigned sects = img[VMP_BZ_SETUP_SECTS];
	if (sects == 0)
		sects = 4; /* boot.rst: "If this field is 0, the real value is 4." */
	bz->setup_size = (sects + 1) * 512u;
	if (bz->setup_size >= len)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: setup_sects %u (%u bytes) reaches beyond the file (%zu bytes)",
				     sects, bz->setup_size, len);
	if (bz->hdr_end > bz->setup_size)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: setup header (to %#x) longer than the setup code (%#x)",
				     bz->hdr_end, bz->setup_size);
	if (len - bz->setup_size > UINT32_MAX)
		return hatch_err_set(err, E_ARG, 0, "bzImage: %zu bytes, too large", len);
	bz->kernel_offset = bz->setup_size;
	bz->kernel_size = (uint32_t)(len - bz->setup_size);

	uint64_t sys = (uint64_t)rd32(img + VMP_BZ_SYSSIZE) * 16;
	if (sys == 0 || sys > bz->kernel_size)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: syssize says %llu bytes of kernel, the file has %u after setup",
				     (unsigned long long)sys, bz->kernel_size);
	bz->syssize_bytes = (uint32_t)sys;

	uint8_t loadflags = img[VMP_BZ_LOADFLAGS];
	if (!(loadflags & VMP_BZ_LOADED_HIGH))
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: loadflags %#x lack LOADED_HIGH: a zImage for 0x10000, not loadable at 1 MiB",
				     loadflags);
	bz->xloadflags = rd16(img + VMP_BZ_XLOADFLAGS);
	if (!(bz->xloadflags & VMP_BZ_XLF_KERNEL_64))
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: xloadflags %#x lack XLF_KERNEL_64: no 64-bit entry point",
				     bz->xloadflags);

	bz->kernel_alignment = rd32(img + VMP_BZ_KERNEL_ALIGNMENT);
	if (bz->kernel_alignment == 0 || (bz->kernel_alignment & (bz->kernel_alignment - 1)) ||
	    bz->kernel_alignment > (1u << 30))
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: kernel_alignment %#x is not a power of two up to 1 GiB",
				     bz->kernel_alignment);
	bz->relocatable = img[VMP_BZ_RELOCATABLE] != 0;

	bz->init_size = rd32(img + VMP_BZ_INIT_SIZE);
	if (bz->init_size < bz->syssize_bytes || bz->init_size > (1u << 30))
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: init_size %#x is smaller than the kernel (%#x) or above 1 GiB",
				     bz->init_size, bz->syssize_bytes);

	bz->initrd_addr_max = rd32(img + VMP_BZ_INITRD_ADDR_MAX);
	if (bz->initrd_addr_max < (16u << 20))
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: initrd_addr_max %#x is below 16 MiB", bz->initrd_addr_max);
	bz->cmdline_size = rd32(img + VMP_BZ_CMDLINE_SIZE);
	if (bz->cmdline_size < 256)
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: cmdline_size %u is below the 255 every kernel takes",
				     bz->cmdline_size);

	bz->pref_address = rd64(img + VMP_BZ_PREF_ADDRESS);
	if (bz->pref_address < (1u << 20) || (bz->pref_address & (bz->kernel_alignment - 1)) ||
	    bz->pref_address > (1ull << 32))
		return hatch_err_set(err, E_ARG, 0,
				     "bzImage: pref_address %#llx is below 1 MiB, above 4 GiB or not aligned to %#x",
				     (unsigned long long)bz->pref_address, bz->kernel_alignment);
	return 0;
}
