/* blk.h - virtio-blk requests (virtio 1.1 §5.2) served from an image
 * file, for the vhost-user backend.
 *
 * One request is one descriptor chain: a 16-byte header {le32 type,
 * le32 reserved, le64 sector} in the readable part; then data (readable
 * for OUT/DISCARD/WRITE_ZEROES, writable for IN/GET_ID); then one
 * writable status byte, the chain's last. vhu_blk_request checks the
 * chain's shape for the type (an IN or GET_ID whose data is readable, an
 * OUT whose data is writable, a length not a multiple of 512, a range past
 * the capacity: IOERR), does it with pread/pwrite/fdatasync/fallocate, and
 * writes the status: OK, IOERR, or UNSUPP for a type or flag not offered.
 * A chain with no writable byte has nowhere for a status: it is returned
 * with nothing written. Data goes through a bounce buffer, so the image
 * never sees a pointer into guest memory.
 *
 * Read-only (--read-only, or an image we cannot write): VIRTIO_BLK_F_RO is
 * offered, and OUT, DISCARD and WRITE_ZEROES get IOERR.
 *
 * Overlay (a layer fd): the image is a read-only base shared with other
 * backends, and every change goes to a private layer, a sparse file as
 * large as the disk, in blocks of VHU_BLK_OVL_BLOCK. A bitmap in memory
 * says which blocks the layer holds: a block is read from the layer once
 * it was written (or zeroed) since the start, else from the base. A write
 * that covers a block only in part first copies that block up from the
 * base. DISCARD and WRITE_ZEROES zero the range in the layer (a hole
 * punched where the file system can) and mark it: a discarded block reads
 * as zeros, never as the base's data again. FLUSH has nothing to make
 * durable (the layer dies with the backend) and succeeds at once. The
 * layer is meant to be an unlinked file (O_TMPFILE), so it is gone when
 * the backend exits.
 *
 * Ownership: struct vhu_blk owns its image fd, layer fd, bitmap and
 * buffers (vhu_blk_close). The chain is borrowed.
 */
#ifndef HATCHERY_VHOST_BLK_H
#define HATCHERY_VHOST_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h>

#include "devices/virtqueue.h"
#include "hatchery/error.h"

#define VHU_BLK_SECTOR 512u
#define VHU_BLK_ID_BYTES 20u      /* VIRTIO_BLK_ID_BYTES: GET_ID's serial */
#define VHU_BLK_MAX_SEGS 8u       /* DISCARD/WRITE_ZEROES segments per request */
#define VHU_BLK_MAX_ZERO_SECTORS (1u << 21) /* per segment: 1 GiB */
#define VHU_BLK_OVL_BLOCK 4096u   /* the overlay's copy-on-write unit */

struct vhu_blk {
	int fd;                       /* the image; in overlay mode the base */
	bool ro;
	uint64_t capacity;            /* in 512-byte sectors */
	char serial[VHU_BLK_ID_BYTES]; /* not NUL-terminated when full */
	uint8_t *buf;                 /* bounce buffer, VHU_BLK_BUF bytes */
	/* Overlay mode: layer >= 0. */
	int layer;                    /* the private layer, capacity bytes, sparse */
	uint64_t *written;            /* bit per block: the layer holds it */
	uint8_t *cow;                 /* one block, for copying up */
};

/* Open the image (a regular file or a block device; O_RDONLY when ro).
 * The serial is the image's base name, cut to 20 bytes. Returns 0 or -1
 * with *err set. */
int vhu_blk_open(struct vhu_blk *b, const char *path, bool ro,
		 struct hatch_err *err);

/* The same on fds already open (the supervisor opens them; the backend's
 * jail cannot). image_fd: O_RDWR, or O_RDONLY for ro and for an overlay's
 * base. layer_fd: -1, or an empty regular file open for writing, which
 * becomes the overlay layer (sized here to the disk, sparse); not with ro.
 * serial: GET_ID's answer, cut to 20 bytes (NULL: "hatchery"). Takes
 * ownership of both fds, also on failure. Returns 0 or -1 with *err. */
int vhu_blk_open_fd(struct vhu_blk *b, int image_fd, int layer_fd, bool ro,
		    const char *serial, struct hatch_err *err);

/* An unlinked layer file in dir (O_TMPFILE), for the standalone program:
 * private to us and gone when its last fd closes. Returns the fd, or -1
 * with *err set. */
int vhu_blk_layer_tmpfile(const char *dir, struct hatch_err *err);

/* The disk's size in bytes (capacity sectors). */
static inline uint64_t vhu_blk_bytes(const struct vhu_blk *b)
{
	return b->capacity * VHU_BLK_SECTOR;
}

void vhu_blk_close(struct vhu_blk *b);

/* The virtio feature bits this device offers (VERSION_1 included). */
uint64_t vhu_blk_features(const struct vhu_blk *b);

/* The device's config space, as GET_CONFIG reads it. */
void vhu_blk_config(const struct vhu_blk *b, struct virtio_blk_config *cfg);

/* Serve one request chain; returns the bytes written into its writable
 * part (what the used ring entry says), status byte included. */
uint32_t vhu_blk_request(struct vhu_blk *b, const struct vmp_vq_elem *e);

#endif
