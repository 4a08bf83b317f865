/* agent_chan.h - the agent channel: frames (agent_frame.h) over the
 * virtio-console byte stream (virtio_console.h), both ways.
 *
 * The channel also dies (on_error) when the console's device fails
 * (-EIO: a broken ring) or when the guest resets the device after bytes
 * have moved either way (-ECONNRESET: a frame may have been cut). A reset
 * before any traffic -- Linux's probe resets every device -- is harmless.
 *
 * Inbound (guest -> host): the console hands over the guest's bytes as they
 * come; they are reassembled into frames and each complete payload is
 * passed to on_frame. A length over VMP_AGENT_MAX_FRAME kills the channel
 * (-EMSGSIZE), as does on_frame returning a negative errno; on_error is
 * called once with the reason (the integrator then ends the VM with
 * GUEST_FAULT). A dead channel drops what the guest sends -- the console
 * still returns its buffers, so the guest does not hang -- and refuses
 * sends (-EPIPE).
 *
 * Outbound (host -> guest): vmp_agent_chan_send() appends header and
 * payload to a bounded outbox (-EAGAIN if it does not fit whole: stop
 * reading the client until on_space) and drains the outbox into the
 * guest's receive buffers, now and whenever the guest posts more.
 *
 * Lifecycle:
 *     ch = vmp_agent_chan_new(&console, outbox_size, &cbs, opaque, &err);
 *     vmp_console_init(&console, &vmp_agent_chan_console_cbs, ch, ...);
 *     ... the guest boots; frames flow ...
 *     vmp_agent_chan_free(ch);
 * The channel borrows the console (which must outlive it) and owns its
 * outbox and decoder. The console is its callbacks' only caller.
 *
 * Locking: as virtio_mmio.h -- every call, and every callback (on_frame,
 * on_error, on_space run inside console processing or inside send), under
 * the VM's device-bus mutex. on_frame may call vmp_agent_chan_send;
 * nothing may free the channel from inside a callback.
 */
#ifndef HATCHERY_VMP_AGENT_CHAN_H
#define HATCHERY_VMP_AGENT_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/agent_frame.h"
#include "devices/virtio_console.h"
#include "hatchery/error.h"

#define VMP_AGENT_OUTBOX_DEFAULT (256u << 10)

struct vmp_agent_chan;

struct vmp_agent_chan_cbs {
	/* A complete frame from the guest (a VmReply, to be decoded by the
	 * caller). The payload is valid during the call only. Return 0, or
	 * a negative errno to kill the channel. */
	int (*on_frame)(void *opaque, const uint8_t *payload, size_t len);
	/* The channel died: err is -EMSGSIZE (length over the limit), what
	 * on_frame returned, -EIO (the device failed: a broken ring) or
	 * -ECONNRESET (the guest reset the device mid-conversation); why is
	 * a static string. Once. May be NULL. */
	void (*on_error)(void *opaque, int err, const char *why);
	/* The outbox had refused a send (-EAGAIN) and now has drained some:
	 * try again. May be NULL. */
	void (*on_space)(void *opaque);
};

/* outbox_size: bytes, at least VMP_AGENT_HDR + VMP_AGENT_MAX_FRAME (so any
 * frame fits an empty outbox); 0 takes VMP_AGENT_OUTBOX_DEFAULT. cbs is
 * copied, console and opaque borrowed. NULL with err on failure. */
struct vmp_agent_chan *vmp_agent_chan_new(struct vmp_console *console,
					  size_t outbox_size,
					  const struct vmp_agent_chan_cbs *cbs,
					  void *opaque, struct hatch_err *err);
void vmp_agent_chan_free(struct vmp_agent_chan *ch); /* NULL is fine */

/* The console callbacks that feed a channel (opaque: the channel). */
extern const struct vmp_console_cbs vmp_agent_chan_console_cbs;

/* Queue one frame. Returns 0 (queued whole; part or all may already be in
 * the guest), -EMSGSIZE (len > VMP_AGENT_MAX_FRAME), -EAGAIN (the outbox
 * has no room for VMP_AGENT_HDR + len bytes now; nothing queued) or -EPIPE
 * (the channel is dead). The payload is copied. */
int vmp_agent_chan_send(struct vmp_agent_chan *ch, const void *payload, size_t len);

/* Would a frame of len payload bytes be accepted now? */
bool vmp_agent_chan_can_send(const struct vmp_agent_chan *ch, size_t len);

/* Outbox bytes free (a frame needs VMP_AGENT_HDR + its length) and queued. */
size_t vmp_agent_chan_outbox_free(const struct vmp_agent_chan *ch);
size_t vmp_agent_chan_outbox_used(const struct vmp_agent_chan *ch);

/* Move outbox bytes into the guest's receive buffers, as many as are
 * posted. Send and the console's space callback call it; the integrator
 * needs it only after it changed something else (e.g. a device reset). */
void vmp_agent_chan_drain(struct vmp_agent_chan *ch);

/* Nothing in flight either way (outbox empty, no partial inbound frame)
 * and not dead: the only state in which a VM with this channel may be
 * snapshotted, since the channel's buffers are not saved. */
bool vmp_agent_chan_idle(const struct vmp_agent_chan *ch);

/* A snapshot of an idle channel holds its byte counters only (they tell a
 * device reset by a driver's probe from one that cut a stream in two).
 * Restore empties the outbox and the decoder, clears an error and sets
 * the counters: for a channel over a restored guest, which is in the
 * state it was when the snapshot's channel was idle. */
void vmp_agent_chan_save(const struct vmp_agent_chan *ch, struct snap_agent_chan *s);
void vmp_agent_chan_restore(struct vmp_agent_chan *ch, const struct snap_agent_chan *s);

/* 0 while the channel works, else the error that killed it. */
int vmp_agent_chan_error(const struct vmp_agent_chan *ch);

#endif
