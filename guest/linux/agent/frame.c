/* frame.c - the agent channel's framing and request checks (see frame.h).
 * Pure: the fuzzer links this file alone with the generated protobuf code. */
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "hatchery/v1/common.pb-c.h"

void agent_rx_init(struct agent_rx *rx)
{
	rx->used = 0;
	rx->have = 0;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint8_t *agent_rx_space(struct agent_rx *rx, size_t *room)
{
	/* Compact: the buffer holds one whole frame at most, so a frame that
	 * straddles the end always fits once the consumed bytes are gone. */
	if (rx->used) {
		memmove(rx->buf, rx->buf + rx->used, rx->have - rx->used);
		rx->have -= rx->used;
		rx->used = 0;
	}
	*room = sizeof(rx->buf) - rx->have;
	return rx->buf + rx->have;
}

void agent_rx_commit(struct agent_rx *rx, size_t n)
{
	size_t room = sizeof(rx->buf) - rx->have;
	rx->have += n < room ? n : room;
}

size_t agent_rx_feed(struct agent_rx *rx, const uint8_t *data, size_t n)
{
	size_t room;
	uint8_t *p = agent_rx_space(rx, &room);
	if (n > room)
		n = room;
	memcpy(p, data, n);
	agent_rx_commit(rx, n);
	return n;
}

enum agent_rx_result agent_rx_next(struct agent_rx *rx, const uint8_t **payload,
				   size_t *len, uint32_t *declared)
{
	size_t avail = rx->have - rx->used;
	if (avail < AGENT_HDR)
		return AGENT_RX_MORE;
	const uint8_t *p = rx->buf + rx->used;
	uint32_t n = le32(p);
	*declared = n;
	/* Bounded before anything waits for or decodes the payload. The
	 * bytes stay in place, so every later call says the same. */
	if (n > AGENT_MAX_FRAME)
		return AGENT_RX_TOO_LARGE;
	if (avail - AGENT_HDR < n)
		return AGENT_RX_MORE;
	*payload = p + AGENT_HDR;
	*len = n;
	rx->used += AGENT_HDR + n;
	return AGENT_RX_FRAME;
}

static int bad(char *msg, size_t msglen, const char *what)
{
	snprintf(msg, msglen, "%s", what);
	return HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT;
}

static int check_path(const char *op, const char *path, char *msg, size_t msglen)
{
	if (!path || path[0] != '/') {
		snprintf(msg, msglen, "%s: path must be absolute, not \"%.200s\"", op,
			 path ? path : "");
		return HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT;
	}
	return 0;
}

static int check_exec(const Hatchery__V1__VmExecRequest *x, char *msg, size_t msglen)
{
	if (x->n_argv == 0 || !x->argv[0] || !x->argv[0][0])
		return bad(msg, msglen, "exec: argv is empty");
	if (x->output_limit > AGENT_MAX_OUTPUT_LIMIT)
		return bad(msg, msglen, "exec: output_limit is over 1 GiB");
	for (size_t i = 0; i < x->n_env; i++)
		if (!strchr(x->env[i], '=') || x->env[i][0] == '=') {
			snprintf(msg, msglen, "exec: env entry \"%.200s\" is not NAME=value",
				 x->env[i]);
			return HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT;
		}
	return 0;
}

static int check_write(const Hatchery__V1__VmWriteFileRequest *w, char *msg, size_t msglen)
{
	int r = check_path("write_file", w->path, msg, msglen);
	if (r)
		return r;
	if (w->size > AGENT_MAX_WRITE_SIZE)
		return bad(msg, msglen, "write_file: size is over 1 GiB");
	if (w->data.len > w->size)
		return bad(msg, msglen, "write_file: the first packet carries more than size bytes");
	if (w->mode & ~07777u)
		return bad(msg, msglen, "write_file: mode has bits beyond 07777");
	return 0;
}

int agent_request_check(const Hatchery__V1__VmRequest *req, char *msg, size_t msglen)
{
	msg[0] = '\0';
	/* Replies to id 0 read as "the request could not be decoded". */
	if (req->id == 0)
		return bad(msg, msglen, "request id 0 is reserved");
	switch (req->body_case) {
	case HATCHERY__V1__VM_REQUEST__BODY_PING:
	case HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK:
		return 0;
	case HATCHERY__V1__VM_REQUEST__BODY_EXEC:
		return check_exec(req->exec, msg, msglen);
	case HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE:
		return check_write(req->write_file, msg, msglen);
	case HATCHERY__V1__VM_REQUEST__BODY_READ_FILE:
		return check_path("read_file", req->read_file->path, msg, msglen);
	case HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR:
		return check_path("list_dir", req->list_dir->path, msg, msglen);
	case HATCHERY__V1__VM_REQUEST__BODY_STAT:
		return check_path("stat", req->stat->path, msg, msglen);
	case HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME: {
		size_t n = req->agent_resume->entropy.len;
		if (n < AGENT_RESUME_ENTROPY_MIN || n > AGENT_RESUME_ENTROPY_MAX) {
			snprintf(msg, msglen, "agent_resume: entropy is %zu bytes, not %u..%u", n,
				 AGENT_RESUME_ENTROPY_MIN, AGENT_RESUME_ENTROPY_MAX);
			return HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT;
		}
		return 0;
	}
	case HATCHERY__V1__VM_REQUEST__BODY__NOT_SET:
		return bad(msg, msglen, "request without a body");
	default:
		snprintf(msg, msglen, "request body %d is not served by the Linux agent",
			 (int)req->body_case);
		return HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT;
	}
}
