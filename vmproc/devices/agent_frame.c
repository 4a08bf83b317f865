/* agent_frame.c - length-prefixed frames: see agent_frame.h. */
#include <errno.h>
#include <string.h>

#include "devices/agent_frame.h"

void vmp_frame_dec_init(struct vmp_frame_dec *d)
{
	d->hdr_have = d->len = d->have = 0;
	d->error = 0;
	d->frames = 0;
}

bool vmp_frame_dec_partial(const struct vmp_frame_dec *d)
{
	return d->hdr_have > 0;
}

void vmp_frame_hdr(uint8_t hdr[VMP_AGENT_HDR], uint32_t len)
{
	hdr[0] = (uint8_t)len;
	hdr[1] = (uint8_t)(len >> 8);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 24);
}

static int deliver(struct vmp_frame_dec *d, const uint8_t *payload,
		   vmp_frame_fn on_frame, void *opaque)
{
	uint32_t len = d->len;
	d->hdr_have = d->len = d->have = 0;
	d->frames++;
	int r = on_frame(opaque, payload, len);
	if (r < 0)
		d->error = r;
	return r < 0 ? r : 0;
}

int vmp_frame_dec_feed(struct vmp_frame_dec *d, const uint8_t *p, size_t n,
		       vmp_frame_fn on_frame, void *opaque)
{
	while (n > 0 && d->error == 0) {
		if (d->hdr_have < VMP_AGENT_HDR) {
			d->hdr[d->hdr_have++] = *p++;
			n--;
			if (d->hdr_have < VMP_AGENT_HDR)
				continue;
			d->len = (uint32_t)d->hdr[0] | (uint32_t)d->hdr[1] << 8 |
				 (uint32_t)d->hdr[2] << 16 | (uint32_t)d->hdr[3] << 24;
			/* Checked before a byte of the payload is kept: the
			 * buffer is exactly the limit. */
			if (d->len > VMP_AGENT_MAX_FRAME) {
				d->error = -EMSGSIZE;
				break;
			}
			d->have = 0;
			if (d->len == 0 && deliver(d, d->buf, on_frame, opaque) < 0)
				break;
			continue;
		}
		size_t need = d->len - d->have;
		if (d->have == 0 && n >= need) {
			/* The whole payload is in this piece: no copy. */
			const uint8_t *payload = p;
			p += need;
			n -= need;
			if (deliver(d, payload, on_frame, opaque) < 0)
				break;
			continue;
		}
		size_t take = n < need ? n : need;
		memcpy(d->buf + d->have, p, take);
		d->have += (uint32_t)take;
		p += take;
		n -= take;
		if (d->have == d->len && deliver(d, d->buf, on_frame, opaque) < 0)
			break;
	}
	return d->error;
}
