/* layout.h - the byte layout of a snapshot file, private to snapshot/.
 *
 * Every byte offset of the format is named here and nowhere else: the
 * writer (write.c), the header codec (header.c) and the parser (parse.c)
 * include this file; no other folder does (callers use snapshot.h, which
 * hands out decoded structs). docs/snapshot.md documents the same layout
 * in tables; a format version 2 is a change to this file, header.c and the
 * doc.
 */
#ifndef HATCHERY_SNAPSHOT_LAYOUT_H
#define HATCHERY_SNAPSHOT_LAYOUT_H

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hatchery/v1/common.pb-c.h"
#include "snapshot.h"

#define E_INVAL HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT
#define E_PRECOND HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION
#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL

/* The fuzz build (and only it) goes on past checksum mismatches, so that
 * mutated inputs reach the checks behind them: a fuzzer cannot fix a CRC. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_BAD(a, b) ((void)(a), (void)(b), false)
#else
#define CRC_BAD(a, b) ((a) != (b))
#endif

/* The header, at offset 0. */
enum {
	HDR_MAGIC = 0,           /* 8 bytes, "HATCHSNP" */
	HDR_VERSION = 8,         /* u32 */
	HDR_HEADER_SIZE = 12,    /* u32, = HDR_SIZE */
	HDR_CPU_VENDOR = 16,     /* 12 bytes */
	HDR_CPU_SIGNATURE = 28,  /* u32 */
	HDR_CPUID_HASH = 32,     /* u64 */
	HDR_MEM_SIZE = 40,       /* u64 */
	HDR_NVCPUS = 48,         /* u32 */
	HDR_NSECTIONS = 52,      /* u32 */
	HDR_SEC_OFFSET = 56,     /* u64, = HDR_SIZE */
	HDR_SEC_SIZE = 64,       /* u64 */
	HDR_MEM_OFFSET = 72,     /* u64 */
	HDR_MEM_DATA_SIZE = 80,  /* u64 */
	HDR_FILE_SIZE = 88,      /* u64 */
	HDR_RESERVED = 96,       /* zero up to HDR_CRC */
	HDR_CRC = 124,           /* u32, CRC32C of bytes [0, HDR_CRC) */
	HDR_SIZE = 128,
};
#define HDR_MAGIC_LEN 8
#define HDR_VENDOR_LEN 12

/* A section: this header, then the payload, zero-padded to SEC_ALIGN. */
enum {
	SEC_TYPE = 0,            /* u32, enum snap_sec */
	SEC_INDEX = 4,           /* u32, the vCPU for vCPU sections, else 0 */
	SEC_LEN = 8,             /* u64, payload length */
	SEC_CRC = 16,            /* u32, CRC32C of bytes [0, SEC_CRC), then the payload */
	SEC_RESERVED = 20,       /* u32, zero */
	SEC_HDR_SIZE = 24,
	SEC_ALIGN = 8,
};

/* A memory map entry (the SEC_MEMMAP payload is an array of them). */
enum {
	EXT_GPA = 0,             /* u64 */
	EXT_LEN = 8,             /* u64 */
	EXT_FILE_OFFSET = 16,    /* u64 */
	EXT_CRC = 24,            /* u32, CRC32C of the extent's data */
	EXT_RESERVED = 28,       /* u32, zero */
	EXT_SIZE = 32,
};

extern const char snap_magic[HDR_MAGIC_LEN];

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

/* Guest RAM: [0, min(mem_size, SNAP_LOW_MEM_MAX)) then from
 * SNAP_HIGH_MEM_BASE on (snap_ram_slots() in common.c). */
#define SNAP_LOW_MEM_MAX (3ull << 30)
#define SNAP_HIGH_MEM_BASE (1ull << 32)

/* ---- little-endian access and checked arithmetic ---------------------- */

static inline uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline bool add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
	return !__builtin_add_overflow(a, b, r);
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ---- shared between the writer and the parser ------------------------ */

/* What each section type holds (common.c). */
struct sec_info {
	const char *name;
	const char *struct_name; /* NULL: variable length */
	size_t size;             /* fixed size, or the element size */
	uint64_t max_len;        /* the longest payload allowed (memory map: 0,
				  * it depends on the memory size) */
	bool optional;
};

/* NULL for a type the format does not define. */
const struct sec_info *snap_sec_info(uint32_t type);
bool snap_sec_is_vcpu(uint32_t type);
/* "vcpu3 sregs", "ioapic", "type 99", written to b (n bytes); returns b. */
const char *snap_sec_name(char *b, size_t n, uint32_t type, uint32_t idx);

/* Encode h (every field but crc, which is computed and stored in h too)
 * into the HDR_SIZE bytes at out. header.c. */
void snap_header_encode(uint8_t *out, struct snap_header *h);

/* Whether [gpa, gpa + len) lies inside one RAM slot of a guest with
 * mem_size bytes. common.c. */
bool snap_gpa_in_ram(uint64_t mem_size, uint64_t gpa, uint64_t len);

#endif
