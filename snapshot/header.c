/* header.c - the fixed-size header at the start of a snapshot: encode it
 * (for write.c), decode and check it (snap_header_peek, also the first step
 * of snap_parse), and read it from a file (snap_header_read_fd,
 * snap_parse_fd). Pure: no KVM; on files only lseek, mmap and munmap, which
 * a jailed child may use. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layout.h"

_Static_assert(HDR_FILE_SIZE + 8 == HDR_RESERVED, "the reserved bytes follow the file size");
_Static_assert(HDR_CRC + 4 == HDR_SIZE, "the CRC is the header's last field");
_Static_assert(HDR_SIZE % SEC_ALIGN == 0, "the first section is aligned");

void snap_header_encode(uint8_t *out, struct snap_header *h)
{
	memset(out, 0, HDR_SIZE);
	memcpy(out + HDR_MAGIC, snap_magic, HDR_MAGIC_LEN);
	put32(out + HDR_VERSION, h->version);
	put32(out + HDR_HEADER_SIZE, HDR_SIZE);
	memcpy(out + HDR_CPU_VENDOR, h->cpu.vendor, HDR_VENDOR_LEN);
	put32(out + HDR_CPU_SIGNATURE, h->cpu.signature);
	put64(out + HDR_CPUID_HASH, h->cpu.cpuid_hash);
	put64(out + HDR_MEM_SIZE, h->mem_size);
	put32(out + HDR_NVCPUS, h->nvcpus);
	put32(out + HDR_NSECTIONS, h->nsections);
	put64(out + HDR_SEC_OFFSET, h->sections_offset);
	put64(out + HDR_SEC_SIZE, h->sections_size);
	put64(out + HDR_MEM_OFFSET, h->mem_offset);
	put64(out + HDR_MEM_DATA_SIZE, h->mem_data_size);
	put64(out + HDR_FILE_SIZE, h->file_size);
	h->crc = snap_crc32c(0, out, HDR_CRC);
	put32(out + HDR_CRC, h->crc);
}

/* The most bytes of header and sections (the memory data's offset) that a
 * sound snapshot of nvcpus vCPUs and mem_size bytes of RAM can have: every
 * section at its longest, the memory map with one extent per page. A
 * restoring child maps that much before it parses, so a header cannot make
 * it map or checksum more. nvcpus <= SNAP_MAX_VCPUS, so no overflow. */
static uint64_t meta_max(uint32_t nvcpus, uint64_t mem_size)
{
	uint64_t n = HDR_SIZE;
	for (uint32_t t = 0; t <= SEC_VM_LAST; t++) {
		const struct sec_info *si = snap_sec_info(t);
		if (!si)
			continue;
		uint64_t len = t == SEC_MEMMAP ? mem_size / SNAP_PAGE_SIZE * EXT_SIZE : si->max_len;
		uint64_t one = SEC_HDR_SIZE + align_up(len, SEC_ALIGN);
		n += snap_sec_is_vcpu(t) ? one * nvcpus : one;
	}
	return align_up(n, SNAP_PAGE_SIZE);
}

#define FAIL(...) hatch_err_set(err, E_INVAL, 0, "snapshot: " __VA_ARGS__)

/* The fields' own checks, then the layout they state. The order of the
 * checks is the order of the messages a damaged file gets. */
static int check_header(const struct snap_header *h, struct hatch_err *err)
{
	if (h->nvcpus == 0 || h->nvcpus > SNAP_MAX_VCPUS)
		return FAIL("vcpu count %u out of range 1..%d", h->nvcpus, SNAP_MAX_VCPUS);
	if (h->mem_size == 0 || h->mem_size % SNAP_PAGE_SIZE)
		return FAIL("memory size 0x%llx is not a positive multiple of 4 KiB",
			    (unsigned long long)h->mem_size);
	uint64_t sec_end, mem_end;
	if (h->sections_offset != HDR_SIZE)
		return FAIL("sections start at 0x%llx, expected 0x%x",
			    (unsigned long long)h->sections_offset, HDR_SIZE);
	if (!add_ok(h->sections_offset, h->sections_size, &sec_end) || sec_end > h->mem_offset)
		return FAIL("sections end past the memory data (0x%llx + 0x%llx > 0x%llx)",
			    (unsigned long long)h->sections_offset,
			    (unsigned long long)h->sections_size,
			    (unsigned long long)h->mem_offset);
	if (h->mem_offset % SNAP_PAGE_SIZE || h->mem_offset != align_up(sec_end, SNAP_PAGE_SIZE))
		return FAIL("memory data at 0x%llx, expected 0x%llx (first page after the sections)",
			    (unsigned long long)h->mem_offset,
			    (unsigned long long)align_up(sec_end, SNAP_PAGE_SIZE));
	if (!add_ok(h->mem_offset, h->mem_data_size, &mem_end) || mem_end != h->file_size)
		return FAIL("file size field 0x%llx, expected 0x%llx + 0x%llx",
			    (unsigned long long)h->file_size, (unsigned long long)h->mem_offset,
			    (unsigned long long)h->mem_data_size);
	uint64_t max = meta_max(h->nvcpus, h->mem_size);
	if (h->mem_offset > max)
		return FAIL("header and sections take 0x%llx bytes, more than a snapshot of %u "
			    "vcpus and 0x%llx bytes of memory can (0x%llx)",
			    (unsigned long long)h->mem_offset, h->nvcpus,
			    (unsigned long long)h->mem_size, (unsigned long long)max);
	return 0;
}

int snap_header_peek(const void *buf_, size_t buf_len, struct snap_header *out,
		     struct hatch_err *err)
{
	const uint8_t *buf = buf_;
	memset(out, 0, sizeof(*out));
	if (buf_len < HDR_SIZE)
		return FAIL("truncated: file is 0x%zx bytes, the header alone is 0x%x", buf_len,
			    HDR_SIZE);
	if (memcmp(buf + HDR_MAGIC, snap_magic, HDR_MAGIC_LEN) != 0)
		return FAIL("bad magic (not a hatchery snapshot)");
	/* The version before the checksum, so that a newer file says so. */
	uint32_t version = get32(buf + HDR_VERSION);
	if (version != SNAP_VERSION)
		return FAIL("format version %u, this build reads version %d", version, SNAP_VERSION);
	uint32_t crc = snap_crc32c(0, buf, HDR_CRC), stored = get32(buf + HDR_CRC);
	if (CRC_BAD(crc, stored))
		return FAIL("header checksum mismatch (crc32c 0x%08x, stored 0x%08x)", crc, stored);
	if (get32(buf + HDR_HEADER_SIZE) != HDR_SIZE)
		return FAIL("header size %u, expected %u", get32(buf + HDR_HEADER_SIZE), HDR_SIZE);
	for (unsigned i = HDR_RESERVED; i < HDR_CRC; i++)
		if (buf[i])
			return FAIL("header reserved byte %u is not zero", i);

	struct snap_header h = {
		.version = version,
		.cpu.signature = get32(buf + HDR_CPU_SIGNATURE),
		.cpu.cpuid_hash = get64(buf + HDR_CPUID_HASH),
		.mem_size = get64(buf + HDR_MEM_SIZE),
		.nvcpus = get32(buf + HDR_NVCPUS),
		.nsections = get32(buf + HDR_NSECTIONS),
		.sections_offset = get64(buf + HDR_SEC_OFFSET),
		.sections_size = get64(buf + HDR_SEC_SIZE),
		.mem_offset = get64(buf + HDR_MEM_OFFSET),
		.mem_data_size = get64(buf + HDR_MEM_DATA_SIZE),
		.file_size = get64(buf + HDR_FILE_SIZE),
		.crc = stored,
	};
	memcpy(h.cpu.vendor, buf + HDR_CPU_VENDOR, HDR_VENDOR_LEN);
	if (check_header(&h, err) < 0)
		return -1;
	*out = h;
	return 0;
}

int snap_header_read_fd(int fd, struct snap_header *h, uint64_t *file_size,
			struct hatch_err *err)
{
	memset(h, 0, sizeof(*h));
	if (file_size)
		*file_size = 0;
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < 0)
		return hatch_err_set(err, E_INVAL, errno,
				     "snapshot: not a regular file holding a snapshot (lseek)");
	if (file_size)
		*file_size = (uint64_t)size;
	if ((uint64_t)size < HDR_SIZE)
		return FAIL("truncated: file is 0x%llx bytes, the header alone is 0x%x",
			    (unsigned long long)size, HDR_SIZE);
	void *p = mmap(NULL, HDR_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return hatch_err_set(err, E_INVAL, errno, "snapshot: mmap the header");
	int r = snap_header_peek(p, HDR_SIZE, h, err);
	munmap(p, HDR_SIZE);
	return r;
}
