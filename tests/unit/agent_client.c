/* agent_client.c - see agent_client.h. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "agent_client.h"
#include "hatchery/clock.h"
#include "testing.h"
/* ---- frames ------------------------------------------------------------ */

void send_raw(struct agent *a, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(a->fd, b, n);
		cr_assert_gt(w, 0, "write to the agent: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

void send_req(struct agent *a, const Req *r)
{
	size_t n = hatchery__v1__vm_request__get_packed_size(r);
	cr_assert_leq(n, MAX_FRAME, "a test request of %zu bytes", n);
	uint8_t *buf = malloc(4 + n);
	buf[0] = (uint8_t)n;
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = (uint8_t)(n >> 16);
	buf[3] = (uint8_t)(n >> 24);
	hatchery__v1__vm_request__pack(r, buf + 4);
	send_raw(a, buf, 4 + n);
	free(buf);
}

/* n bytes within the deadline; false at EOF. */
bool recv_exact(struct agent *a, void *p, size_t n, uint64_t deadline)
{
	uint8_t *b = p;
	while (n) {
		uint64_t now = hatch_now_ns();
		cr_assert_lt(now, deadline, "the agent did not answer in time");
		struct pollfd pf = { .fd = a->fd, .events = POLLIN };
		int r = poll(&pf, 1, (int)((deadline - now) / 1000000 + 1));
		if (r == 0)
			continue;
		ssize_t got = read(a->fd, b, n);
		if (got < 0 && errno == EINTR)
			continue;
		cr_assert_geq(got, 0, "read from the agent: %s", strerror(errno));
		if (got == 0)
			return false;
		b += got;
		n -= (size_t)got;
	}
	return true;
}

/* The next reply, or NULL at EOF. Caller frees. */
Reply *recv_reply_ms(struct agent *a, unsigned ms)
{
	uint64_t deadline = hatch_now_ns() + (uint64_t)t_ms(ms) * 1000000ull;
	uint8_t hdr[4];
	if (!recv_exact(a, hdr, 4, deadline))
		return NULL;
	uint32_t n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
	if (n > MAX_FRAME) {
		/* Show what came instead of a frame: text is a log line in
		 * the wrong place, binary a frame boundary lost. */
		uint8_t more[64] = { 0 };
		ssize_t got = read(a->fd, more, sizeof(more));
		char shown[4 * sizeof(more) + 16];
		size_t k = 0;
		for (int i = 0; i < 4; i++)
			k += (size_t)snprintf(shown + k, sizeof(shown) - k, "\\x%02x", hdr[i]);
		for (ssize_t i = 0; i < got; i++)
			k += (size_t)snprintf(shown + k, sizeof(shown) - k,
					      more[i] >= 32 && more[i] < 127 ? "%c" : "\\x%02x",
					      more[i]);
		cr_assert_fail("the agent sent a frame of %u bytes: %s", n, shown);
	}
	uint8_t *buf = malloc(n ? n : 1);
	cr_assert(recv_exact(a, buf, n, deadline), "EOF inside a frame");
	Reply *r = hatchery__v1__vm_reply__unpack(NULL, n, buf);
	free(buf);
	cr_assert_not_null(r, "the agent sent a frame that is no VmReply");
	return r;
}

Reply *recv_reply(struct agent *a)
{
	return recv_reply_ms(a, 10000);
}

/* ---- the agent's life ---------------------------------------------------- */

void ping(struct agent *a, uint64_t id)
{
	Hatchery__V1__VmPingRequest p = HATCHERY__V1__VM_PING_REQUEST__INIT;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	r.ping = &p;
	send_req(a, &r);
	Reply *rep = recv_reply(a);
	cr_assert_not_null(rep);
	cr_assert_eq(rep->id, id);
	cr_assert_null(rep->error, "ping: %s", rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_PING);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
}

/* ---- Exec ---------------------------------------------------------------- */



void append(uint8_t **buf, size_t *len, const ProtobufCBinaryData *d)
{
	*buf = realloc(*buf, *len + d->len + 1);
	memcpy(*buf + *len, d->data, d->len);
	*len += d->len;
	(*buf)[*len] = '\0'; /* text output compares as a string */
}

struct result exec_run(struct agent *a, uint64_t id, const struct run *run)
{
	size_t argc = 0, envc = 0;
	while (run->argv[argc])
		argc++;
	while (run->env && run->env[envc])
		envc++;
	Hatchery__V1__VmExecRequest x = HATCHERY__V1__VM_EXEC_REQUEST__INIT;
	x.n_argv = argc;
	x.argv = run->argv;
	x.n_env = envc;
	x.env = run->env;
	x.cwd = (char *)(run->cwd ? run->cwd : "");
	x.stdin.data = (uint8_t *)run->in;
	x.stdin.len = run->in_len;
	x.timeout_ms = run->timeout_ms;
	x.output_limit = run->limit;
	x.uid = run->uid;
	x.gid = run->gid;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_EXEC;
	r.exec = &x;
	uint64_t t0 = hatch_now_ns();
	send_req(a, &r);
	struct result res = { 0 };
	res.out = calloc(1, 1);
	res.err = calloc(1, 1);
	for (;;) {
		Reply *rep = recv_reply_ms(a, 30000);
		cr_assert_not_null(rep, "EOF during exec");
		cr_assert_eq(rep->id, id, "reply id %llu during exec %llu",
			     (unsigned long long)rep->id, (unsigned long long)id);
		if (rep->error) {
			res.code = rep->error->code;
			res.guest_errno = rep->error->guest_errno;
			snprintf(res.msg, sizeof(res.msg), "%s", rep->error->message);
			hatchery__v1__vm_reply__free_unpacked(rep, NULL);
			break;
		}
		if (rep->body_case == HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT) {
			Hatchery__V1__VmExecOutput *o = rep->exec_output;
			cr_assert_leq(o->data.len, MAX_FRAME);
			if (o->stream == HATCHERY__V1__VM_EXEC_OUTPUT__STREAM__STDOUT)
				append(&res.out, &res.out_len, &o->data);
			else
				append(&res.err, &res.err_len, &o->data);
			hatchery__v1__vm_reply__free_unpacked(rep, NULL);
			continue;
		}
		cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_EXEC,
			     "exec answered with body %d", rep->body_case);
		res.x = *rep->exec;
		hatchery__v1__vm_reply__free_unpacked(rep, NULL);
		break;
	}
	res.wall_ms = (hatch_now_ns() - t0) / 1000000;
	return res;
}

void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
}


/* Run `sh -c script`; assert it exited 0 with no error. */
struct result sh_ok(struct agent *a, uint64_t id, const char *script)
{
	struct run run = { .argv = ARGV("sh", "-c", (char *)script) };
	struct result r = exec_run(a, id, &run);
	cr_assert_eq(r.code, 0, "sh -c '%s': error %d: %s", script, r.code, r.msg);
	cr_assert_eq(r.x.signal, 0, "sh -c '%s': signal %d", script, r.x.signal);
	cr_assert_eq(r.x.exit_code, 0, "sh -c '%s': exit %d, stderr: %s", script,
		     r.x.exit_code, r.err);
	return r;
}

Reply *write_file(struct agent *a, uint64_t id, const char *path, const uint8_t *data,
			 size_t n, uint32_t mode, size_t first, size_t chunk)
{
	Hatchery__V1__VmWriteFileRequest w = HATCHERY__V1__VM_WRITE_FILE_REQUEST__INIT;
	w.path = (char *)path;
	w.mode = mode;
	w.size = n;
	w.data.data = (uint8_t *)data;
	w.data.len = first < n ? first : n;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE;
	r.write_file = &w;
	send_req(a, &r);
	for (size_t off = w.data.len; off < n;) {
		size_t len = n - off < chunk ? n - off : chunk;
		Hatchery__V1__VmFileChunk c = HATCHERY__V1__VM_FILE_CHUNK__INIT;
		c.data.data = (uint8_t *)data + off;
		c.data.len = len;
		Req cr = HATCHERY__V1__VM_REQUEST__INIT;
		cr.id = id;
		cr.body_case = HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK;
		cr.file_chunk = &c;
		send_req(a, &cr);
		off += len;
	}
	Reply *rep = recv_reply_ms(a, 30000);
	cr_assert_not_null(rep);
	cr_assert_eq(rep->id, id);
	return rep;
}

/* ReadFile: the bytes (caller frees) and the final reply or error. */
Reply *read_file(struct agent *a, uint64_t id, const char *path, uint64_t max,
			uint8_t **data, size_t *len)
{
	Hatchery__V1__VmReadFileRequest rf = HATCHERY__V1__VM_READ_FILE_REQUEST__INIT;
	rf.path = (char *)path;
	rf.max_size = max;
	Req r = HATCHERY__V1__VM_REQUEST__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REQUEST__BODY_READ_FILE;
	r.read_file = &rf;
	send_req(a, &r);
	*data = calloc(1, 1);
	*len = 0;
	for (;;) {
		Reply *rep = recv_reply_ms(a, 30000);
		cr_assert_not_null(rep);
		cr_assert_eq(rep->id, id);
		if (rep->body_case != HATCHERY__V1__VM_REPLY__BODY_FILE_CHUNK || rep->error)
			return rep;
		append(data, len, &rep->file_chunk->data);
		hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	}
}
