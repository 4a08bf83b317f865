/* snapshot.h - the hatchery snapshot file format: build, parse, validate.
 *
 * This module is the file format alone: no KVM ioctls, no sockets. vmproc/
 * gathers the state from KVM into a struct snap_state and hands it here;
 * on restore it applies what snap_parse() returned. It is the only owner of
 * the file's byte layout (snapshot/layout.h, private; docs/snapshot.md):
 * every other folder reads a snapshot through the functions below and
 * sees decoded structs, never an offset. It also owns the guest RAM layout
 * (which GPA is which byte of guest RAM), because the file records GPAs;
 * vmproc/ registers its memory slots from snap_ram_slots().
 *
 * Files: common.c (CRC32C, CPUID hash, guest RAM layout), header.c (the
 * fixed-size header: encode, peek, verify), devices.c (the devices
 * section: encode, decode, check), write.c (the writer), parse.c (the
 * parser, in steps: header, fit, sections, memory map).
 *
 * Lifecycle:
 *   save:    fill a struct snap_state (borrowed pointers), then
 *            snap_write_fd() (or snap_encode() for a buffer: tests, seeds)
 *   restore: snap_parse_fd() on the file (or snap_parse() on the file's
 *            bytes: a buffer covering at least the header and sections,
 *            plus the whole file's size), which checks EVERYTHING before it
 *            returns anything; optionally snap_verify_memory() over the
 *            memory data; use the image; then snap_image_free().
 *   peek:    snap_header_read_fd() / snap_header_peek(): the header alone,
 *            checked (magic, version, CRC, sizes), e.g. to see whether a
 *            file changed since it was parsed (struct snap_header.crc).
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
#define SNAP_MAX_OPAQUE (16u << 20) /* the runtime blob */

/* Guest RAM is one host mapping of mem_size bytes, seen by the guest as at
 * most two slots: its first min(mem_size, 3 GiB) bytes at GPA 0, the rest
 * at GPA 4 GiB, leaving the 32-bit MMIO hole (LAPIC, IOAPIC) free, as on a
 * PC. Extents' GPAs are checked against this. */
#define SNAP_RAM_SLOTS 2
struct snap_ram_slot {
	uint64_t gpa;           /* guest-physical start */
	uint64_t offset;        /* byte offset in the guest RAM mapping */
	uint64_t len;           /* bytes, > 0 */
};

/* Fill slot[] for a guest of mem_size bytes; returns how many (1 or 2; 0
 * for mem_size 0). vmproc registers one KVM memory slot per entry. */
unsigned snap_ram_slots(uint64_t mem_size, struct snap_ram_slot slot[SNAP_RAM_SLOTS]);

/* The byte offset in guest RAM of a GPA inside guest RAM (every extent of
 * a parsed image is: snap_parse checked it). */
uint64_t snap_gpa_to_ram_offset(uint64_t gpa);

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

/* ---- device state (the devices section, type 38) ----------------------
 * A Linux guest's machine (vmproc/linux/machine.c, docs/guest-linux.md),
 * decoded. snapshot/ checks it as the devices would if the guest had
 * written it (docs/snapshot.md, "The devices section"); it does not know
 * the devices themselves: vmproc/ copies these fields in and out. */
#define SNAP_MACHINE_LINUX 1      /* COM1 + i8042 + virtio-mmio devices (docs/guest-linux.md) */
#define SNAP_MAX_VIRTIO 8
#define SNAP_VIRTIO_MAX_QUEUES 8
#define SNAP_VIRTIO_MAX_QUEUE_SIZE 256

/* The 16550A on COM1 (struct vmp_uart). */
struct snap_uart {
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_pending, irq_level;
};

/* The agent channel's counters (vmproc/devices/agent_chan.c). */
struct snap_agent_chan {
	uint64_t bytes_in, bytes_out;
};

/* One virtqueue as the transport holds it (vmp_virtio_mmio_save fills it). */
struct snap_virtio_queue {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t num, last_avail, used_idx;
	bool ready, enabled;      /* QueueReady as written; the ring is in use */
};

/* One virtio-mmio device's transport (vmp_virtio_mmio_save/_restore).
 * Queues nqueues.. are all zero. */
struct snap_virtio_dev {
	uint32_t device_id, nqueues;
	uint32_t status, interrupt_status, config_generation;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t device_features, driver_features;
	struct snap_virtio_queue q[SNAP_VIRTIO_MAX_QUEUES];
};

/* The devices of a Linux guest. The i8042 has no state (its reset line
 * only). Entries nvirtio.. of virtio[] are not written, and are zero in a
 * parsed image. */
struct snap_devices {
	uint32_t machine;          /* SNAP_MACHINE_LINUX */
	struct snap_uart uart;
	struct snap_agent_chan agent;  /* the channel on virtio device 0 */
	uint32_t nvirtio;          /* 1..SNAP_MAX_VIRTIO */
	struct snap_virtio_dev virtio[SNAP_MAX_VIRTIO];
};

/* Everything a snapshot holds. For the writer, every pointer is borrowed.
 * In a struct snap_image from snap_parse(), the pointers (devices too: a
 * heap copy, decoded and checked) are owned by the image (freed by
 * snap_image_free) and `mem` is NULL: guest memory stays in
 * the file, described by the image's extents. */
struct snap_state {
	struct snap_cpu cpu;
	uint64_t mem_size;      /* bytes of guest RAM, a multiple of 4 KiB */
	const uint8_t *mem;     /* writer: mem_size bytes, the host view */
	uint32_t nvcpus;        /* 1..SNAP_MAX_VCPUS */
	struct snap_vcpu *vcpu; /* nvcpus entries */
	struct snap_vm vm;
	/* Exactly one of these two: a kernel-less guest has runtime state, a
	 * Linux guest has devices. Neither or both is INVALID_ARGUMENT, for
	 * the writer and in a file. */
	const void *runtime;    /* vmproc/guest runtime state, opaque here; NULL: none */
	uint32_t runtime_len;
	const struct snap_devices *devices; /* NULL: none (a kernel-less guest) */
};

/* Whether s is a Linux guest's state (it has devices, no runtime). */
static inline bool snap_is_linux(const struct snap_state *s)
{
	return s->devices != NULL;
}

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
	uint32_t header_crc;     /* struct snap_header.crc of this file */
};

/* The fixed-size header at the start of every snapshot, decoded. */
struct snap_header {
	uint32_t version;        /* SNAP_VERSION */
	struct snap_cpu cpu;
	uint64_t mem_size;       /* bytes of guest RAM, a positive multiple of 4 KiB */
	uint32_t nvcpus;         /* 1..SNAP_MAX_VCPUS */
	uint32_t nsections;
	uint64_t sections_offset, sections_size;
	uint64_t mem_offset;     /* page-aligned: the header and sections end before it */
	uint64_t mem_data_size;
	uint64_t file_size;      /* as stated: mem_offset + mem_data_size */
	uint32_t crc;            /* the header's CRC32C: changes with any header byte */
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

/* Decode and check the header at the start of buf (buf_len bytes; fewer
 * than a header is "truncated"): magic, format version, the header's CRC,
 * header size, reserved bytes, the vCPU count and memory size ranges, and
 * the layout it states (sections right after it, the memory data at the
 * first page after them, the stated file size, and metadata no larger than
 * a snapshot of that many vCPUs and that much memory can need). It does not
 * compare anything with the real file size (snap_parse does). On failure
 * *h is zeroed and err says what is wrong (INVALID_ARGUMENT). */
int snap_header_peek(const void *buf, size_t buf_len, struct snap_header *h,
		     struct hatch_err *err);

/* snap_header_peek() on the start of a file: maps the header read-only
 * (lseek, mmap, munmap: what a jailed child may do) and, if file_size is
 * not NULL, stores the file's real size there (also on failure, or 0 if
 * it cannot be had). An fd that cannot seek (a pipe, a socket) or a file
 * shorter than a header fails with INVALID_ARGUMENT. Does not take
 * ownership of fd; its file offset is left at the end. */
int snap_header_read_fd(int fd, struct snap_header *h, uint64_t *file_size,
			struct hatch_err *err);

/* Parse and validate. `buf` holds the first buf_len bytes of a file of
 * file_size bytes (buf_len <= file_size; buf_len must cover the header and
 * sections, normally mem_offset, or the whole file). Checks, in this order,
 * the header (snap_header_peek), its fit to `want`, the sections
 * (checksums, every bound with overflow checks, struct sizes) and the
 * memory map (page-aligned, inside the file, contiguous, non-overlapping,
 * inside guest RAM) before it returns *img.
 * On failure *img is left empty and err says what is wrong
 * (INVALID_ARGUMENT; FAILED_PRECONDITION for a snapshot that is sound but
 * does not fit `want`). */
int snap_parse(const uint8_t *buf, size_t buf_len, uint64_t file_size,
	       const struct snap_expect *want, struct snap_image *img,
	       struct hatch_err *err);

/* snap_parse() on a file: peeks the header, maps the header and sections
 * read-only (never the memory data: it is only bounds-checked, and the
 * caller maps the extents it needs) and parses them against the file's
 * real size. Same errors as snap_parse(), plus snap_header_read_fd()'s.
 * Does not take ownership of fd; its file offset is left at the end. */
int snap_parse_fd(int fd, const struct snap_expect *want, struct snap_image *img,
		  struct hatch_err *err);

/* Check every extent's CRC32C against the memory data in `file` (the whole
 * file, file_len bytes). Slow path: reads all of guest memory. */
int snap_verify_memory(const struct snap_image *img, const uint8_t *file,
		       size_t file_len, struct hatch_err *err);

void snap_image_free(struct snap_image *img);

#endif
