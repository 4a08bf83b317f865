/* snapshot.h - the hatchery snapshot file format: build, parse, validate.
 *
 * This module is the file format alone: no KVM ioctls, no sockets. vmproc/
 * gathers the state from KVM into a struct snap_state and hands it here;
 * on restore it applies what snap_parse() returned. The layout is in
 * docs/snapshot.md.
 *
 * Lifecycle:
 *   save:    fill a struct snap_state (borrowed pointers), then
 *            snap_write_fd() (or snap_encode() for a buffer: tests, seeds)
 *   restore: snap_parse() on the file's bytes (a buffer covering at least the
 *            header and sections, plus the whole file's size), which checks
 *            EVERYTHING before it returns anything; optionally
 *            snap_verify_memory() over the memory data; use the image; then
 *            snap_image_free().
 *
 * Payloads are the kernel's own structs from <linux/kvm.h>, stored raw
 * (little-endian: x86 only) with their length recorded; a length that is not
 * this build's sizeof() is rejected with a message naming the struct, so a
 * snapshot from a kernel whose structs differ fails clearly.
 */
#ifndef HATCHERY_SNAPSHOT_H
#define HATCHERY_SNAPSHOT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"

#define SNAP_VERSION 1
#define SNAP_PAGE_SIZE 4096u
#define SNAP_MAX_VCPUS 64
#define SNAP_MAX_MSRS 1024
#define SNAP_MAX_XSAVE (64u << 10)
#define SNAP_MAX_OPAQUE (16u << 20) /* runtime and device blobs, each */
/* Guest RAM is [0, min(mem_size, 3 GiB)) and then [4 GiB, ...), as vmproc
 * lays it out (VMP_LOW_MEM_MAX); extents' GPAs are checked against this. */
#define SNAP_LOW_MEM_MAX (3ull << 30)
#define SNAP_HIGH_MEM_BASE (1ull << 32)

/* The host CPU a snapshot was taken on / is restored on. */
struct snap_cpu {
	char vendor[12];        /* CPUID.0 EBX,EDX,ECX: "GenuineIntel" */
	uint32_t signature;     /* CPUID.1 EAX: family/model/stepping */
	uint64_t cpuid_hash;    /* snap_cpuid_hash(KVM_GET_SUPPORTED_CPUID) */
};

struct snap_tsc {
	uint64_t tsc_khz;       /* KVM_GET_TSC_KHZ */
	uint64_t tsc;           /* MSR_IA32_TSC at save */
};

struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	const void *xsave;      /* KVM_GET_XSAVE(2) bytes, or NULL (not supported) */
	uint32_t xsave_len;     /* >= sizeof(struct kvm_xsave), <= SNAP_MAX_XSAVE */
	bool has_xcrs;
	struct kvm_xcrs xcrs;
	const struct kvm_msr_entry *msrs; /* nmsrs entries (may be 0) */
	uint32_t nmsrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct snap_tsc tsc;
};

struct snap_vm {
	struct kvm_irqchip pic_master, pic_slave, ioapic; /* chip_id 0, 1, 2 */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/* Everything a snapshot holds. For the writer, every pointer is borrowed.
 * In a struct snap_image from snap_parse(), the pointers are owned by the
 * image (freed by snap_image_free) and `mem` is NULL: guest memory stays in
 * the file, described by the image's extents. */
struct snap_state {
	struct snap_cpu cpu;
	uint64_t mem_size;      /* bytes of guest RAM, a multiple of 4 KiB */
	const uint8_t *mem;     /* writer: mem_size bytes, the host view */
	uint32_t nvcpus;        /* 1..SNAP_MAX_VCPUS */
	struct snap_vcpu *vcpu; /* nvcpus entries */
	struct snap_vm vm;
	const void *runtime;    /* vmproc/guest runtime state, opaque here */
	uint32_t runtime_len;
	const void *devices;    /* device state, opaque here; NULL: none */
	uint32_t devices_len;
};

/* A run of non-zero guest pages stored at file_offset. */
struct snap_extent {
	uint64_t gpa, len, file_offset;
	uint32_t crc;           /* CRC32C of the len bytes at file_offset */
};

struct snap_image {
	struct snap_state st;
	uint32_t nextents;
	struct snap_extent *ext; /* sorted by gpa, contiguous in the file */
	uint64_t mem_offset;     /* page-aligned start of the memory data */
	uint64_t mem_data_size;  /* sum of extent lengths */
	uint64_t file_size;
};

/* What the restoring process has: the shell's RAM size and vCPU count and
 * the host CPU. A snapshot that does not match is rejected. */
struct snap_expect {
	uint64_t mem_size;
	uint32_t nvcpus;
	struct snap_cpu cpu;
};

/* CRC32C (Castagnoli), as in iSCSI/ext4: crc32c(0, "123456789", 9) is
 * 0xe3069283. Pass the previous result to continue over more bytes. */
uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len);

/* A 64-bit hash of a KVM_GET_SUPPORTED_CPUID table, in its order. */
uint64_t snap_cpuid_hash(const struct kvm_cpuid_entry2 *e, uint32_t n);

/* Build the whole file in a malloc'd buffer (*out, caller frees). For tests
 * and small guests; snap_write_fd() does not copy guest memory. Errors:
 * INVALID_ARGUMENT naming the field. */
int snap_encode(const struct snap_state *s, uint8_t **out, size_t *out_len,
		struct hatch_err *err);

/* Write the snapshot to fd (a regular file, at offset 0; the file is
 * truncated to the snapshot's size). Zero pages of guest memory are not
 * stored: they are holes in the memory map, and the memory data holds only
 * the non-zero pages, packed. Does not take ownership of fd. */
int snap_write_fd(int fd, const struct snap_state *s, struct hatch_err *err);

/* Parse and validate. `buf` holds the first buf_len bytes of a file of
 * file_size bytes (buf_len <= file_size; buf_len must cover the header and
 * sections, normally mem_offset, or the whole file). Checks magic, version,
 * checksums, every bound (with overflow checks), struct sizes, the counts
 * against `want` and the memory map (page-aligned, inside the file,
 * contiguous, non-overlapping, inside guest RAM) before filling *img.
 * On failure *img is left empty and err says what is wrong
 * (INVALID_ARGUMENT; FAILED_PRECONDITION for a snapshot that is sound but
 * does not fit `want`). */
int snap_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size,
	       const struct snap_expect *want, struct snap_image *img,
	       struct hatch_err *err);

/* Check every extent's CRC32C against the memory data in `file` (the whole
 * file, file_len bytes). Slow path: reads all of guest memory. */
int snap_verify_memory(const struct snap_image *img, const uint8_t *file,
		       size_t file_len, struct hatch_err *err);

void snap_image_free(struct snap_image *img);

#endif
