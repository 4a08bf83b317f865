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

/* The devices section's payload (SEC_DEVICES; docs/snapshot.md, "The
 * devices section"): this fixed part, then nvirtio device records, each
 * with all SNAP_VIRTIO_MAX_QUEUES queue records. Exactly DEV_LEN(nvirtio)
 * bytes. */
enum {
	DEV_MAGIC = 0,           /* u32, DEV_MAGIC_VALUE */
	DEV_VERSION = 4,         /* u32, DEV_PAYLOAD_VERSION */
	DEV_MACHINE = 8,         /* u32, SNAP_MACHINE_LINUX */
	DEV_NVIRTIO = 12,        /* u32, 1..SNAP_MAX_VIRTIO */
	DEV_UART = 16,           /* the UART record, DUART_SIZE bytes */
	DEV_I8042 = 32,          /* the i8042 record: DI8042_SIZE zero bytes (no state) */
	DEV_AGENT = 40,          /* the agent channel record, DAGENT_SIZE bytes */
	DEV_RESERVED = 56,       /* zero up to DEV_FIXED_SIZE */
	DEV_FIXED_SIZE = 64,     /* then the virtio device records */
};
#define DEV_MAGIC_VALUE 0x31564448u /* "HDV1" as LE bytes */
#define DEV_PAYLOAD_VERSION 1

/* The UART record (COM1's 16550A). */
enum {
	DUART_IER = 0,           /* u8 each, as the registers hold them */
	DUART_LCR = 1,
	DUART_MCR = 2,
	DUART_SCR = 3,
	DUART_FCR = 4,
	DUART_DLL = 5,
	DUART_DLM = 6,
	DUART_THR_PENDING = 7,   /* u8, 0 or 1 */
	DUART_IRQ_LEVEL = 8,     /* u8, 0 or 1 */
	DUART_RESERVED = 9,      /* zero up to DUART_SIZE */
	DUART_SIZE = 16,
};
#define DI8042_SIZE 8            /* reserved, zero */

/* The agent channel record. */
enum {
	DAGENT_BYTES_IN = 0,     /* u64 */
	DAGENT_BYTES_OUT = 8,    /* u64 */
	DAGENT_SIZE = 16,
};

/* A virtio-mmio device record. */
enum {
	VDEV_DEVICE_ID = 0,      /* u32, not 0 */
	VDEV_NQUEUES = 4,        /* u32, 1..SNAP_VIRTIO_MAX_QUEUES */
	VDEV_STATUS = 8,         /* u32 */
	VDEV_INTERRUPT_STATUS = 12, /* u32 */
	VDEV_CONFIG_GENERATION = 16, /* u32 */
	VDEV_DEVICE_FEATURES_SEL = 20, /* u32 */
	VDEV_DRIVER_FEATURES_SEL = 24, /* u32 */
	VDEV_QUEUE_SEL = 28,     /* u32 */
	VDEV_DEVICE_FEATURES = 32, /* u64 */
	VDEV_DRIVER_FEATURES = 40, /* u64 */
	VDEV_QUEUES = 48,        /* SNAP_VIRTIO_MAX_QUEUES queue records */
	VDEV_SIZE = VDEV_QUEUES + SNAP_VIRTIO_MAX_QUEUES * 32,
};

/* A queue record, inside a device record. */
enum {
	VQ_DESC = 0,             /* u64, descriptor table GPA */
	VQ_AVAIL = 8,            /* u64, available ring GPA */
	VQ_USED = 16,            /* u64, used ring GPA */
	VQ_NUM = 24,             /* u16, queue size */
	VQ_LAST_AVAIL = 26,      /* u16, next available entry the device takes */
	VQ_USED_IDX = 28,        /* u16, the device's used index */
	VQ_READY = 30,           /* u8, 0 or 1 */
	VQ_ENABLED = 31,         /* u8, 0 or 1 */
	VQ_SIZE = 32,
};

#define DEV_LEN(nvirtio) (DEV_FIXED_SIZE + (uint64_t)(nvirtio) * VDEV_SIZE)

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

static inline uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}

static inline void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

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

/* The devices section (devices.c). snap_devices_check: everything the
 * parser refuses in a decoded struct snap_devices (the writer calls it
 * too), for a guest of mem_size bytes; INVALID_ARGUMENT naming the field,
 * the device and the queue. snap_devices_encode: d, checked, into the
 * DEV_LEN(d->nvirtio) bytes at out. snap_devices_decode: len bytes at p
 * into *d (zeroed first), then snap_devices_check. */
int snap_devices_check(const struct snap_devices *d, uint64_t mem_size,
		       struct hatch_err *err);
void snap_devices_encode(const struct snap_devices *d, uint8_t *out);
int snap_devices_decode(const uint8_t *p, uint64_t len, uint64_t mem_size,
			struct snap_devices *d, struct hatch_err *err);

/* Whether [gpa, gpa + len) lies inside one RAM slot of a guest with
 * mem_size bytes. common.c. */
bool snap_gpa_in_ram(uint64_t mem_size, uint64_t gpa, uint64_t len);

#endif
