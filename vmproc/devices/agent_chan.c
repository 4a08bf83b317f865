/* agent_chan.c - frames over the console: see agent_chan.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/agent_chan.h"
#include "hatchery/v1/common.pb-c.h"

struct vmp_agent_chan {
	struct vmp_console *console;   /* borrowed */
	struct vmp_agent_chan_cbs cbs;
	void *opaque;
	int error;
	bool want_space;    /* a send was refused: tell on_space when drained */
	bool refused;       /* on_frame returned an error (vs. a bad length) */
	uint64_t bytes_in, bytes_out; /* moved over the console so far */
	/* The outbox: a byte ring. head is the next byte to go to the guest,
	 * used the bytes queued; the free part follows them. */
	uint8_t *out;
	size_t cap, head, used;
	struct vmp_frame_dec dec;      /* last: 64 KiB */
};

static void die_once(struct vmp_agent_chan *ch, int err, const char *why)
{
	if (ch->error)
		return;
	ch->error = err;
	if (ch->cbs.on_error)
		ch->cbs.on_error(ch->opaque, err, why);
}

static int frame_cb(void *opaque, const uint8_t *payload, size_t len)
{
	struct vmp_agent_chan *ch = opaque;
	int r = ch->cbs.on_frame(ch->opaque, payload, len);
	if (r < 0)
		ch->refused = true;
	return r;
}

static void on_guest_data(void *opaque, const uint8_t *data, size_t len)
{
	struct vmp_agent_chan *ch = opaque;
	if (ch->error)
		return; /* dead: drop, but the console still returns the buffer */
	ch->bytes_in += len;
	int r = vmp_frame_dec_feed(&ch->dec, data, len, frame_cb, ch);
	if (r < 0)
		die_once(ch, r, ch->refused ? "agent frame refused by its reader"
					    : "agent frame length over the limit");
}

static void on_guest_space(void *opaque)
{
	vmp_agent_chan_drain(opaque);
}

static void on_reset(void *opaque)
{
	struct vmp_agent_chan *ch = opaque;
	/* Before any traffic a reset is the driver's probe; after, the guest
	 * lost its side of the stream (a frame may be half through) and the
	 * two ends can no longer agree where frames start. */
	if (ch->bytes_in || ch->bytes_out)
		die_once(ch, -ECONNRESET, "guest reset the agent channel's device");
}

static void on_failed(void *opaque, const char *why)
{
	die_once(opaque, -EIO, why);
}

const struct vmp_console_cbs vmp_agent_chan_console_cbs = {
	.on_guest_data = on_guest_data,
	.on_guest_space = on_guest_space,
	.on_reset = on_reset,
	.on_failed = on_failed,
};

struct vmp_agent_chan *vmp_agent_chan_new(struct vmp_console *console,
					  size_t outbox_size,
					  const struct vmp_agent_chan_cbs *cbs,
					  void *opaque, struct hatch_err *err)
{
	if (outbox_size == 0)
		outbox_size = VMP_AGENT_OUTBOX_DEFAULT;
	if (!console || !cbs || !cbs->on_frame ||
	    outbox_size < VMP_AGENT_HDR + VMP_AGENT_MAX_FRAME) {
		hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
			      "agent channel: no console or on_frame, or an outbox "
			      "under one frame (%zu bytes)", outbox_size);
		return NULL;
	}
	struct vmp_agent_chan *ch = calloc(1, sizeof(*ch));
	uint8_t *out = malloc(outbox_size);
	if (!ch || !out) {
		free(ch);
		free(out);
		hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, ENOMEM,
			      "agent channel: %zu bytes", outbox_size);
		return NULL;
	}
	ch->console = console;
	ch->cbs = *cbs;
	ch->opaque = opaque;
	ch->out = out;
	ch->cap = outbox_size;
	vmp_frame_dec_init(&ch->dec);
	return ch;
}

void vmp_agent_chan_free(struct vmp_agent_chan *ch)
{
	if (!ch)
		return;
	free(ch->out);
	free(ch);
}

bool vmp_agent_chan_idle(const struct vmp_agent_chan *ch)
{
	return !ch->error && ch->used == 0 && !vmp_frame_dec_partial(&ch->dec);
}

void vmp_agent_chan_save(const struct vmp_agent_chan *ch, struct snap_agent_chan *s)
{
	*s = (struct snap_agent_chan){ .bytes_in = ch->bytes_in, .bytes_out = ch->bytes_out };
}

void vmp_agent_chan_restore(struct vmp_agent_chan *ch, const struct snap_agent_chan *s)
{
	ch->error = 0;
	ch->want_space = false;
	ch->refused = false;
	ch->head = ch->used = 0;
	vmp_frame_dec_init(&ch->dec);
	ch->bytes_in = s->bytes_in;
	ch->bytes_out = s->bytes_out;
}

int vmp_agent_chan_error(const struct vmp_agent_chan *ch)
{
	return ch->error;
}

size_t vmp_agent_chan_outbox_free(const struct vmp_agent_chan *ch)
{
	return ch->cap - ch->used;
}

size_t vmp_agent_chan_outbox_used(const struct vmp_agent_chan *ch)
{
	return ch->used;
}

bool vmp_agent_chan_can_send(const struct vmp_agent_chan *ch, size_t len)
{
	return !ch->error && len <= VMP_AGENT_MAX_FRAME &&
	       VMP_AGENT_HDR + len <= ch->cap - ch->used;
}

/* Append to the ring; the caller checked the room. */
static void put(struct vmp_agent_chan *ch, const void *src, size_t len)
{
	if (len == 0)
		return; /* an empty payload may come as NULL: no memcpy from it */
	size_t tail = (ch->head + ch->used) % ch->cap;
	size_t first = ch->cap - tail < len ? ch->cap - tail : len;
	memcpy(ch->out + tail, src, first);
	memcpy(ch->out, (const uint8_t *)src + first, len - first);
	ch->used += len;
}

void vmp_agent_chan_drain(struct vmp_agent_chan *ch)
{
	bool freed = false;
	while (ch->used > 0) {
		size_t chunk = ch->cap - ch->head < ch->used ? ch->cap - ch->head : ch->used;
		size_t n = vmp_console_write(ch->console, ch->out + ch->head, chunk);
		ch->head = (ch->head + n) % ch->cap;
		ch->used -= n;
		ch->bytes_out += n;
		if (n)
			freed = true;
		if (n < chunk)
			break; /* the guest has no more buffers posted */
	}
	if (ch->used == 0)
		ch->head = 0; /* keep the next frame contiguous */
	if (freed && ch->want_space && !ch->error) {
		ch->want_space = false;
		if (ch->cbs.on_space)
			ch->cbs.on_space(ch->opaque);
	}
}

int vmp_agent_chan_send(struct vmp_agent_chan *ch, const void *payload, size_t len)
{
	if (ch->error)
		return -EPIPE;
	if (len > VMP_AGENT_MAX_FRAME)
		return -EMSGSIZE;
	if (VMP_AGENT_HDR + len > ch->cap - ch->used) {
		ch->want_space = true;
		return -EAGAIN;
	}
	uint8_t hdr[VMP_AGENT_HDR];
	vmp_frame_hdr(hdr, (uint32_t)len);
	put(ch, hdr, sizeof(hdr));
	put(ch, payload, len);
	vmp_agent_chan_drain(ch);
	return 0;
}
