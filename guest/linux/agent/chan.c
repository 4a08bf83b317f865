/* chan.c - the agent's channel: frames in (through struct agent_rx) and
 * replies out, blocking. While it waits for a request it also reaps
 * children, so orphans never pile up between operations.
 *
 * Protocol errors: a frame that does not decode is answered with
 * VmReply{id 0, MALFORMED} and skipped (the stream is still in step). A
 * length field over 65,536 bytes is answered with VmReply{id 0,
 * MESSAGE_TOO_LARGE}, logged, and ends the channel: nothing after it can be
 * trusted to be a frame boundary (the host ends the VM on its side for the
 * same fault), so the agent stops serving (PID 1: reboot, the VM ends).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static void lose(struct agent *a, const char *why, int err)
{
	if (!a->lost)
		agent_log("channel lost: %s%s%s", why, err ? ": " : "",
			  err ? strerror(err) : "");
	a->lost = true;
}

int chan_send(struct agent *a, const Hatchery__V1__VmReply *r)
{
	if (a->lost)
		return -EPIPE;
	size_t n = hatchery__v1__vm_reply__get_packed_size(r);
	if (n > AGENT_MAX_FRAME) {
		/* A bug here (every reply is sized to fit): never send it. */
		agent_log("reply %llu of %zu bytes over the frame limit",
			  (unsigned long long)r->id, n);
		return -EMSGSIZE;
	}
	hatchery__v1__vm_reply__pack(r, a->tx + AGENT_HDR);
	a->tx[0] = (uint8_t)n;
	a->tx[1] = (uint8_t)(n >> 8);
	a->tx[2] = (uint8_t)(n >> 16);
	a->tx[3] = (uint8_t)(n >> 24);
	size_t off = 0, total = AGENT_HDR + n;
	while (off < total) {
		ssize_t w = write(a->chan_fd, a->tx + off, total - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			/* A nonblocking fd from the host side: wait. */
			struct pollfd p = { .fd = a->chan_fd, .events = POLLOUT };
			poll(&p, 1, -1);
			continue;
		}
		if (w <= 0) {
			int e = w < 0 ? errno : EPIPE;
			lose(a, "write", e);
			return -e;
		}
		off += (size_t)w;
	}
	return 0;
}

int chan_send_error(struct agent *a, uint64_t id, const struct hatch_err *e)
{
	Hatchery__V1__Error err = HATCHERY__V1__ERROR__INIT;
	err.code = e->code;
	err.message = (char *)e->msg;
	if (e->code == HATCHERY__V1__ERROR_CODE__AGENT_ERROR && e->sys_errno > 0)
		err.guest_errno = (uint32_t)e->sys_errno;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.error = &err;
	return chan_send(a, &r);
}

/* Read what is there into rx, waiting (and reaping) until something is.
 * false when the channel ended. */
static bool fill(struct agent *a)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = a->chan_fd, .events = POLLIN },
			{ .fd = a->sig_fd, .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			lose(a, "poll", errno);
			return false;
		}
		if (p[1].revents)
			agent_reap(a);
		if (!p[0].revents)
			continue;
		size_t room;
		uint8_t *dst = agent_rx_space(&a->rx, &room);
		ssize_t n = read(a->chan_fd, dst, room);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n == 0) {
			a->eof = true;
			lose(a, "the host closed it", 0);
			return false;
		}
		if (n < 0) {
			lose(a, "read", errno);
			return false;
		}
		agent_rx_commit(&a->rx, (size_t)n);
		return true;
	}
}

Hatchery__V1__VmRequest *chan_recv(struct agent *a)
{
	if (a->pending) {
		Hatchery__V1__VmRequest *r = a->pending;
		a->pending = NULL;
		return r;
	}
	while (!a->lost) {
		const uint8_t *payload = NULL;
		size_t len = 0;
		uint32_t declared = 0;
		switch (agent_rx_next(&a->rx, &payload, &len, &declared)) {
		case AGENT_RX_MORE:
			if (!fill(a))
				return NULL;
			break;
		case AGENT_RX_TOO_LARGE: {
			struct hatch_err e;
			hatch_err_set(&e, HATCHERY__V1__ERROR_CODE__MESSAGE_TOO_LARGE, 0,
				      "frame length %u is over %u bytes; the channel is "
				      "out of step and the agent stops serving",
				      declared, AGENT_MAX_FRAME);
			agent_log("%s", e.msg);
			chan_send_error(a, 0, &e);
			lose(a, "oversized frame", 0);
			return NULL;
		}
		case AGENT_RX_FRAME: {
			Hatchery__V1__VmRequest *r =
				hatchery__v1__vm_request__unpack(NULL, len, payload);
			if (r)
				return r;
			struct hatch_err e;
			hatch_err_set(&e, HATCHERY__V1__ERROR_CODE__MALFORMED, 0,
				      "a frame of %zu bytes is no VmRequest", len);
			agent_log("%s", e.msg);
			chan_send_error(a, 0, &e);
			break;
		}
		}
	}
	return NULL;
}
