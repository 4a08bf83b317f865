/* fuzz_snapshot.c - libFuzzer harness for the snapshot parser.
 *
 * The input is a whole snapshot file. It is parsed twice: as the whole file,
 * and as a prefix of a file claimed to be longer (the restore path parses
 * only the header and sections of a file it then maps), with and without a
 * shell to match. Whatever is accepted is then walked: every extent is read
 * back (snap_verify_memory) and every owned buffer touched, so that ASan sees
 * any bound the parser got wrong. The header peek (snap_header_peek) runs
 * on every input too, and must agree with what the parse accepted. Build
 * with -DHATCH_FUZZ=ON (scripts/fuzz).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* [gpa, gpa + len) inside one slot of snap_ram_slots(mem_size). */
static int in_ram(uint64_t mem_size, uint64_t gpa, uint64_t len)
{
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned n = snap_ram_slots(mem_size, slot);
	for (unsigned i = 0; i < n; i++)
		if (gpa >= slot[i].gpa && gpa - slot[i].gpa <= slot[i].len &&
		    len <= slot[i].len - (gpa - slot[i].gpa))
			return 1;
	return 0;
}

static void walk(const struct snap_image *img, const uint8_t *data, size_t size)
{
	volatile uint8_t sink = 0;
	for (uint32_t i = 0; i < img->st.nvcpus; i++) {
		const struct snap_vcpu *v = &img->st.vcpu[i];
		const uint8_t *x = v->xsave;
		for (uint32_t k = 0; x && k < v->xsave_len; k += 64)
			sink ^= x[k];
		for (uint32_t k = 0; k < v->nmsrs; k++)
			sink ^= (uint8_t)v->msrs[k].data;
	}
	const uint8_t *r = img->st.runtime;
	for (uint32_t k = 0; r && k < img->st.runtime_len; k++)
		sink ^= r[k];
	/* Exactly one of the two, and the devices as the parser promised. */
	if (!img->st.runtime == !img->st.devices)
		__builtin_trap();
	const struct snap_devices *d = img->st.devices;
	if (d) {
		if (d->machine != SNAP_MACHINE_LINUX || d->nvirtio == 0 ||
		    d->nvirtio > SNAP_MAX_VIRTIO)
			__builtin_trap();
		sink ^= d->uart.lcr ^ (uint8_t)d->agent.bytes_in;
		for (uint32_t i = 0; i < d->nvirtio; i++) {
			const struct snap_virtio_dev *v = &d->virtio[i];
			if (v->nqueues == 0 || v->nqueues > SNAP_VIRTIO_MAX_QUEUES)
				__builtin_trap();
			for (uint32_t k = 0; k < v->nqueues; k++) {
				const struct snap_virtio_queue *q = &v->q[k];
				if (q->num > SNAP_VIRTIO_MAX_QUEUE_SIZE || (q->num & (q->num - 1)))
					__builtin_trap();
				/* An enabled queue's rings are guest RAM: the
				 * layout says so for this memory size. */
				if (q->enabled &&
				    (q->num == 0 || !q->ready ||
				     !in_ram(img->st.mem_size, q->desc_gpa, 16ull * q->num) ||
				     !in_ram(img->st.mem_size, q->avail_gpa, 6 + 2ull * q->num) ||
				     !in_ram(img->st.mem_size, q->used_gpa, 6 + 8ull * q->num)))
					__builtin_trap();
				sink ^= (uint8_t)(q->desc_gpa ^ q->avail_gpa ^ q->used_gpa);
			}
		}
	}
	struct hatch_err err;
	if (img->file_size <= size)
		snap_verify_memory(img, data, size, &err);
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_image img;
	struct hatch_err err;
	struct snap_header h;
	int peeked = snap_header_peek(data, size, &h, &err);
	if (snap_parse(data, size, size, NULL, &img, &err) == 0) {
		/* The header step of the parse is the public peek: whatever the
		 * parse accepts, the peek accepts and describes the same way. */
		if (peeked != 0 || h.crc != img.header_crc || h.mem_offset != img.mem_offset ||
		    h.nvcpus != img.st.nvcpus || h.mem_size != img.st.mem_size)
			__builtin_trap();
		walk(&img, data, size);
		struct snap_expect want = { .mem_size = img.st.mem_size,
					    .nvcpus = img.st.nvcpus,
					    .cpu = img.st.cpu };
		snap_image_free(&img);
		if (snap_parse(data, size, size, &want, &img, &err) == 0)
			snap_image_free(&img);
	}
	/* A prefix of a longer file: only the header and sections are here. */
	if (snap_parse(data, size, (uint64_t)size + 4096 * 3, NULL, &img, &err) == 0) {
		walk(&img, data, size);
		snap_image_free(&img);
	}
	return 0;
}
