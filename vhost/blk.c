/* blk.c - virtio-blk requests on an image file: see blk.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_config.h>

#include "blk.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define VHU_BLK_BUF (64u * 1024u)
#define HDR_SIZE 16u

/* ---- the image ------------------------------------------------------- */

static int image_bytes(int fd, uint64_t *bytes, struct hatch_err *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "fstat");
	if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, bytes) < 0)
			return hatch_err_set(err, E(INTERNAL), errno, "BLKGETSIZE64");
		return 0;
	}
	return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
			     "not a regular file or a block device");
}

static void set_serial(struct vhu_blk *b, const char *name)
{
	/* GET_ID's 20 bytes: NUL-padded, unterminated when the name fills them. */
	memset(b->serial, 0, sizeof(b->serial));
	size_t n = strlen(name);
	memcpy(b->serial, name, n < sizeof(b->serial) ? n : sizeof(b->serial));
}

/* The layer: an empty regular file (a non-empty one is refused: it would
 * be someone's data, or the base itself passed twice), grown to the disk's
 * size as one hole. */
static int open_layer(struct vhu_blk *b, int layer, struct hatch_err *err)
{
	struct stat st;
	if (fstat(layer, &st) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "overlay layer: fstat");
	if (!S_ISREG(st.st_mode) || st.st_size != 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "overlay layer: not an empty regular file");
	if (ftruncate(layer, (off_t)vhu_blk_bytes(b)) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "overlay layer: size it");
	uint64_t blocks = (vhu_blk_bytes(b) + VHU_BLK_OVL_BLOCK - 1) / VHU_BLK_OVL_BLOCK;
	b->written = calloc((size_t)((blocks + 63) / 64) + 1, sizeof(uint64_t));
	b->cow = malloc(VHU_BLK_OVL_BLOCK);
	if (!b->written || !b->cow)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "overlay bitmap");
	return 0;
}

int vhu_blk_open_fd(struct vhu_blk *b, int image_fd, int layer_fd, bool ro,
		    const char *serial, struct hatch_err *err)
{
	memset(b, 0, sizeof(*b));
	b->fd = image_fd;
	b->layer = layer_fd;
	b->ro = ro;
	if (ro && layer_fd >= 0) {
		vhu_blk_close(b);
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "read-only and an overlay are exclusive");
	}
	uint64_t bytes;
	if (image_bytes(image_fd, &bytes, err) < 0) {
		vhu_blk_close(b);
		return -1;
	}
	b->capacity = bytes / VHU_BLK_SECTOR;
	set_serial(b, serial ? serial : "hatchery");
	b->buf = malloc(VHU_BLK_BUF);
	if (!b->buf) {
		vhu_blk_close(b);
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "image buffer");
	}
	if (layer_fd >= 0 && open_layer(b, layer_fd, err) < 0) {
		vhu_blk_close(b);
		return -1;
	}
	return 0;
}

int vhu_blk_open(struct vhu_blk *b, const char *path, bool ro,
		 struct hatch_err *err)
{
	int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		memset(b, 0, sizeof(*b));
		b->fd = b->layer = -1;
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "image `%s`", path);
	}
	const char *base = strrchr(path, '/');
	if (vhu_blk_open_fd(b, fd, -1, ro, base ? base + 1 : path, err) < 0)
		return hatch_err_wrap(err, "image `%s`", path);
	return 0;
}

int vhu_blk_layer_tmpfile(const char *dir, struct hatch_err *err)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno,
				     "overlay layer in `%s` (O_TMPFILE)", dir);
	return fd;
}

void vhu_blk_close(struct vhu_blk *b)
{
	hatch_closep(&b->fd);
	hatch_closep(&b->layer);
	free(b->buf);
	free(b->written);
	free(b->cow);
	b->buf = b->cow = NULL;
	b->written = NULL;
}

uint64_t vhu_blk_features(const struct vhu_blk *b)
{
	uint64_t f = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_BLK_F_SEG_MAX |
		     1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
		     1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	if (b->ro)
		f |= 1ull << VIRTIO_BLK_F_RO;
	return f;
}

void vhu_blk_config(const struct vhu_blk *b, struct virtio_blk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = b->capacity;
	/* A popped chain holds at most VMP_VQ_MAX_SEGS segments (however
	 * large the queue), two of which are the header and the status. */
	cfg->seg_max = VMP_VQ_MAX_SEGS - 2;
	cfg->blk_size = VHU_BLK_SECTOR;
	cfg->num_queues = 1;
	cfg->max_discard_sectors = VHU_BLK_MAX_ZERO_SECTORS;
	cfg->max_discard_seg = VHU_BLK_MAX_SEGS;
	cfg->discard_sector_alignment = 1;
	cfg->max_write_zeroes_sectors = VHU_BLK_MAX_ZERO_SECTORS;
	cfg->max_write_zeroes_seg = VHU_BLK_MAX_SEGS;
	cfg->write_zeroes_may_unmap = 1;
}

/* ---- requests ---------------------------------------------------------- */

/* [sector, sector + n) inside the disk, without overflow. */
static bool in_range(const struct vhu_blk *b, uint64_t sector, uint64_t n)
{
	return sector <= b->capacity && n <= b->capacity - sector;
}

static bool pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false; /* an error, or the image shrank under us */
		done += (size_t)n;
	}
	return true;
}

static bool pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

static bool write_zeros(struct vhu_blk *b, int fd, uint64_t off, uint64_t len)
{
	memset(b->buf, 0, VHU_BLK_BUF);
	for (uint64_t done = 0; done < len; done += VHU_BLK_BUF) {
		size_t n = len - done < VHU_BLK_BUF ? (size_t)(len - done) : VHU_BLK_BUF;
		if (!pwrite_full(fd, b->buf, n, off + done))
			return false;
	}
	return true;
}

/* Zero [off, off + len) of fd: a hole where the file system punches one
 * (discard or unmap), else zeroed in place. discard: a hint only, so a
 * file system that cannot punch keeps the data, which the spec allows. */
static bool zero_range(struct vhu_blk *b, int fd, uint64_t off, uint64_t len,
		       bool discard, bool unmap)
{
	int keep = FALLOC_FL_KEEP_SIZE;
	if (discard || unmap) {
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | keep, (off_t)off, (off_t)len) == 0)
			return true;
		if (discard)
			return errno == EOPNOTSUPP;
	}
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE | keep, (off_t)off, (off_t)len) == 0)
		return true;
	return errno == EOPNOTSUPP && write_zeros(b, fd, off, len);
}

/* ---- the overlay ------------------------------------------------------ */

static bool ovl_has(const struct vhu_blk *b, uint64_t blk)
{
	return b->written[blk / 64] >> (blk % 64) & 1;
}

/* Mark the blocks [off, off + len) touches as the layer's. */
static void ovl_mark(struct vhu_blk *b, uint64_t off, uint64_t len)
{
	for (uint64_t k = off / VHU_BLK_OVL_BLOCK; k <= (off + len - 1) / VHU_BLK_OVL_BLOCK; k++)
		b->written[k / 64] |= 1ull << (k % 64);
}

/* Make block blk the layer's, copying it up from the base unless it is
 * already. The disk's last block may be short. */
static bool ovl_own(struct vhu_blk *b, uint64_t blk)
{
	if (ovl_has(b, blk))
		return true;
	uint64_t off = blk * VHU_BLK_OVL_BLOCK;
	uint64_t n = vhu_blk_bytes(b) - off;
	if (n > VHU_BLK_OVL_BLOCK)
		n = VHU_BLK_OVL_BLOCK;
	if (!pread_full(b->fd, b->cow, (size_t)n, off) ||
	    !pwrite_full(b->layer, b->cow, (size_t)n, off))
		return false;
	ovl_mark(b, off, n);
	return true;
}

/* Before a change of [off, off + len) in the layer: the blocks it covers
 * only in part are copied up first, so the bytes around the change keep
 * the base's data. A range that ends at the disk's end covers its short
 * last block. len > 0. */
static bool ovl_own_edges(struct vhu_blk *b, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	if (off % VHU_BLK_OVL_BLOCK && !ovl_own(b, off / VHU_BLK_OVL_BLOCK))
		return false;
	if (end % VHU_BLK_OVL_BLOCK && end != vhu_blk_bytes(b) &&
	    !ovl_own(b, end / VHU_BLK_OVL_BLOCK))
		return false;
	return true;
}

/* Read [off, off + len) of the disk: runs of blocks from the layer or
 * the base, whichever holds them. */
static bool disk_read(struct vhu_blk *b, uint8_t *p, size_t len, uint64_t off)
{
	if (b->layer < 0)
		return pread_full(b->fd, p, len, off);
	while (len) {
		bool layer = ovl_has(b, off / VHU_BLK_OVL_BLOCK);
		uint64_t end = (off / VHU_BLK_OVL_BLOCK + 1) * VHU_BLK_OVL_BLOCK;
		while (end < off + len && ovl_has(b, end / VHU_BLK_OVL_BLOCK) == layer)
			end += VHU_BLK_OVL_BLOCK;
		size_t n = end - off < len ? (size_t)(end - off) : len;
		if (!pread_full(layer ? b->layer : b->fd, p, n, off))
			return false;
		p += n;
		off += n;
		len -= n;
	}
	return true;
}

static bool disk_write(struct vhu_blk *b, const uint8_t *p, size_t len, uint64_t off)
{
	if (b->layer < 0)
		return pwrite_full(b->fd, p, len, off);
	if (len == 0)
		return true;
	if (!ovl_own_edges(b, off, len) || !pwrite_full(b->layer, p, len, off))
		return false;
	/* Only once the data is there: a failed write leaves the blocks it
	 * did not own reading from the base. */
	ovl_mark(b, off, len);
	return true;
}

/* DISCARD and WRITE_ZEROES. In overlay mode both zero the range for
 * good: the layer's bytes become a hole (or zeros) and are marked, so the
 * base's data under them is never read again. */
static bool disk_zero(struct vhu_blk *b, uint64_t off, uint64_t len, bool discard,
		      bool unmap)
{
	if (b->layer < 0)
		return zero_range(b, b->fd, off, len, discard, unmap);
	if (len == 0)
		return true;
	if (!ovl_own_edges(b, off, len) || !zero_range(b, b->layer, off, len, false, true))
		return false;
	ovl_mark(b, off, len);
	return true;
}

/* IN: the data is the writable part but its last byte (the status); the
 * readable part is the header alone. */
static uint8_t do_in(struct vhu_blk *b, const struct vmp_vq_elem *e,
		     uint64_t sector, uint64_t len)
{
	if (e->read_len != HDR_SIZE || len % VHU_BLK_SECTOR ||
	    !in_range(b, sector, len / VHU_BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	for (uint64_t off = 0; off < len; off += VHU_BLK_BUF) {
		size_t n = len - off < VHU_BLK_BUF ? (size_t)(len - off) : VHU_BLK_BUF;
		if (!disk_read(b, b->buf, n, sector * VHU_BLK_SECTOR + off))
			return VIRTIO_BLK_S_IOERR;
		vmp_vq_elem_write(e, off, b->buf, n);
	}
	return VIRTIO_BLK_S_OK;
}

/* OUT: the data is the readable part after the header; the writable part
 * is the status alone. */
static uint8_t do_out(struct vhu_blk *b, const struct vmp_vq_elem *e,
		      uint64_t sector)
{
	uint64_t len = e->read_len - HDR_SIZE;
	if (b->ro || e->write_len != 1 || len % VHU_BLK_SECTOR ||
	    !in_range(b, sector, len / VHU_BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	for (uint64_t off = 0; off < len; off += VHU_BLK_BUF) {
		size_t n = len - off < VHU_BLK_BUF ? (size_t)(len - off) : VHU_BLK_BUF;
		if (vmp_vq_elem_read(e, HDR_SIZE + off, b->buf, n) != n ||
		    !disk_write(b, b->buf, n, sector * VHU_BLK_SECTOR + off))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_flush(struct vhu_blk *b)
{
	/* An overlay's layer dies with us: nothing to make durable. */
	if (b->layer >= 0)
		return VIRTIO_BLK_S_OK;
	return fdatasync(b->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

/* GET_ID: as much of the serial as the writable data part holds (20
 * bytes); like IN, the readable part is the header alone. */
static uint64_t do_get_id(struct vhu_blk *b, const struct vmp_vq_elem *e,
			  uint64_t len, uint8_t *status)
{
	if (e->read_len != HDR_SIZE) {
		*status = VIRTIO_BLK_S_IOERR;
		return 0;
	}
	uint64_t n = len < VHU_BLK_ID_BYTES ? len : VHU_BLK_ID_BYTES;
	vmp_vq_elem_write(e, 0, b->serial, (size_t)n);
	*status = VIRTIO_BLK_S_OK;
	return n;
}

/* ---- DISCARD and WRITE_ZEROES ---------------------------------------- */

/* The segments after the header, checked: a whole number of them, 1 to
 * VHU_BLK_MAX_SEGS, each inside the disk, no flag we do not know (and no
 * UNMAP on a DISCARD: UNSUPP, as §5.2.6.2 says). */
static uint8_t read_segs(const struct vhu_blk *b, const struct vmp_vq_elem *e,
			 bool discard, struct virtio_blk_discard_write_zeroes *s,
			 unsigned *n)
{
	uint64_t len = e->read_len - HDR_SIZE;
	if (b->ro || e->write_len != 1 || len == 0 || len % sizeof(*s) ||
	    len / sizeof(*s) > VHU_BLK_MAX_SEGS)
		return VIRTIO_BLK_S_IOERR;
	*n = (unsigned)(len / sizeof(*s));
	vmp_vq_elem_read(e, HDR_SIZE, s, (size_t)len);
	for (unsigned i = 0; i < *n; i++) {
		uint32_t known = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		if (s[i].flags & ~known)
			return VIRTIO_BLK_S_UNSUPP;
		if (s[i].num_sectors > VHU_BLK_MAX_ZERO_SECTORS ||
		    !in_range(b, s[i].sector, s[i].num_sectors))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_zero(struct vhu_blk *b, const struct vmp_vq_elem *e, bool discard)
{
	struct virtio_blk_discard_write_zeroes s[VHU_BLK_MAX_SEGS];
	unsigned n = 0;
	uint8_t st = read_segs(b, e, discard, s, &n);
	if (st != VIRTIO_BLK_S_OK)
		return st;
	for (unsigned i = 0; i < n; i++) {
		bool unmap = s[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		if (!disk_zero(b, s[i].sector * VHU_BLK_SECTOR,
				(uint64_t)s[i].num_sectors * VHU_BLK_SECTOR, discard, unmap))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

uint32_t vhu_blk_request(struct vhu_blk *b, const struct vmp_vq_elem *e)
{
	if (e->write_len == 0)
		return 0; /* nowhere to put a status */
	uint64_t data_in = e->write_len - 1;
	struct virtio_blk_outhdr h;
	uint8_t status = VIRTIO_BLK_S_IOERR;
	uint64_t wrote = 0;
	if (e->read_len < HDR_SIZE || vmp_vq_elem_read(e, 0, &h, HDR_SIZE) != HDR_SIZE)
		goto done;
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		status = do_in(b, e, h.sector, data_in);
		wrote = status == VIRTIO_BLK_S_OK ? data_in : 0;
		break;
	case VIRTIO_BLK_T_OUT:
		status = do_out(b, e, h.sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = do_flush(b);
		break;
	case VIRTIO_BLK_T_GET_ID:
		wrote = do_get_id(b, e, data_in, &status);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = do_zero(b, e, h.type == VIRTIO_BLK_T_DISCARD);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
done:
	vmp_vq_elem_write(e, data_in, &status, 1);
	/* The used entry's length is 32 bits; a chain is bounded by guest
	 * memory, not by that. */
	return wrote >= UINT32_MAX ? UINT32_MAX : (uint32_t)(wrote + 1);
}
