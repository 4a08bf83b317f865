/* bzimage.h - the checks a VMM makes on an untrusted bzImage before it
 * loads one (Documentation/x86/boot.rst, "The real-mode kernel header").
 *
 * Pure: no KVM, no I/O, so it is unit-tested on synthetic headers and on
 * the real Debian vmlinuz. vmp_bzimage_parse reads only inside [img,
 * img + len) and fills a struct of offsets and sizes that boot.c trusts
 * afterwards; every field it rejects gets its own message.
 *
 * Ownership: the image is borrowed for the call; the result holds no
 * pointer into it.
 */
#ifndef HATCHERY_VMP_LINUX_BZIMAGE_H
#define HATCHERY_VMP_LINUX_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"

/* Offsets of the setup header fields, in the file and (the header being
 * copied verbatim) in boot_params. */
#define VMP_BZ_SETUP_SECTS      0x1f1
#define VMP_BZ_SYSSIZE          0x1f4
#define VMP_BZ_BOOT_FLAG        0x1fe
#define VMP_BZ_JUMP             0x200
#define VMP_BZ_HEADER           0x202   /* "HdrS" */
#define VMP_BZ_VERSION          0x206
#define VMP_BZ_TYPE_OF_LOADER   0x210
#define VMP_BZ_LOADFLAGS        0x211
#define VMP_BZ_CODE32_START     0x214
#define VMP_BZ_RAMDISK_IMAGE    0x218
#define VMP_BZ_RAMDISK_SIZE     0x21c
#define VMP_BZ_HEAP_END_PTR     0x224
#define VMP_BZ_CMD_LINE_PTR     0x228
#define VMP_BZ_INITRD_ADDR_MAX  0x22c
#define VMP_BZ_KERNEL_ALIGNMENT 0x230
#define VMP_BZ_RELOCATABLE      0x234
#define VMP_BZ_XLOADFLAGS       0x236
#define VMP_BZ_CMDLINE_SIZE     0x238
#define VMP_BZ_PREF_ADDRESS     0x258
#define VMP_BZ_INIT_SIZE        0x260
#define VMP_BZ_HDR_LIMIT        0x290   /* where boot_params' setup_header ends */

#define VMP_BZ_LOADED_HIGH      0x01    /* loadflags */
#define VMP_BZ_XLF_KERNEL_64    0x01    /* xloadflags: the 64-bit entry at +0x200 */
#define VMP_BZ_MIN_VERSION      0x020c  /* 2.12: xloadflags */

struct vmp_bzimage {
	uint16_t version;           /* boot protocol, 0x020f for 2.15 */
	uint32_t setup_size;        /* bytes of the real-mode part: (setup_sects + 1) * 512 */
	uint32_t hdr_end;           /* the setup header is [0x1f1, hdr_end) */
	uint32_t kernel_offset;     /* the protected-mode part in the file (= setup_size) */
	uint32_t kernel_size;       /* its bytes: the rest of the file */
	uint32_t syssize_bytes;     /* what the header says it needs of them */
	uint32_t kernel_alignment;  /* a power of two */
	uint32_t init_size;         /* bytes the kernel needs from its load address on */
	uint32_t initrd_addr_max;   /* highest address the initrd's last byte may have */
	uint32_t cmdline_size;      /* longest command line, without its NUL */
	uint64_t pref_address;      /* where it would rather be loaded */
	uint16_t xloadflags;
	bool relocatable;
};

/* Check the bzImage `img` of `len` bytes and fill *bz. Returns 0, or -1
 * with err naming the field and its value (INVALID_ARGUMENT). */
int vmp_bzimage_parse(const uint8_t *img, size_t len, struct vmp_bzimage *bz,
		      struct hatch_err *err);

#endif
