/* test_client_linux.c - the client library's Linux-guest calls (Exec,
 * WriteFile, ReadFile, ListDir, Stat) against a fake vmproc, and hatchctl
 * exec's exit statuses.
 *
 * The fake is a thread on the far end of a SOCK_SEQPACKET pair: it decodes
 * what the library sends and answers from a script. It never asserts
 * (Criterion's asserts belong to the test's own thread); it records what
 * it saw in `struct fake`, and the test checks that after joining it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchctl.h"
#include "hatchery/client.h"
#include "hatchery/ipc.h"

TestSuite(client_linux, .timeout = 20);

#define MIB (1024u * 1024u)

/* ---- the fake vmproc ---------------------------------------------------- */

struct fake {
	int fd;
	void (*script)(struct fake *);
	/* what it saw */
	size_t npkts, max_pkt;
	bool bad_packet;   /* a packet that did not decode or was oversized */
	bool bad_id;       /* a chunk whose id was not its operation's */
	bool saw_eof;      /* the library shut the socket down */
	Hatchery__V1__VmRequest *first; /* the first request, kept */
	uint8_t *file;     /* WriteFile reassembled */
	uint64_t file_len, file_size;
	/* what it sends */
	const uint8_t *send_data;
	size_t send_len;
};

static uint8_t rxbuf_fake[IPC_MAX_MSG];

static Hatchery__V1__VmRequest *fake_recv(struct fake *f)
{
	struct ipc_msg m = { .buf = rxbuf_fake };
	int r = ipc_recv(f->fd, &m, false);
	if (r == 0) {
		f->saw_eof = true;
		return NULL;
	}
	if (r < 0) {
		f->bad_packet = true;
		return NULL;
	}
	ipc_msg_close_fds(&m);
	f->npkts++;
	if (m.len > f->max_pkt)
		f->max_pkt = m.len;
	Hatchery__V1__VmRequest *req = hatchery__v1__vm_request__unpack(NULL, m.len, m.buf);
	if (!req)
		f->bad_packet = true;
	return req;
}

static void fake_send(struct fake *f, Hatchery__V1__VmReply *rep)
{
	if (ipc_send_pb(f->fd, &rep->base, NULL, 0, false) < 0)
		f->bad_packet = true;
}

static void send_output(struct fake *f, uint64_t id, int stream, const char *s)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmExecOutput o = HATCHERY__V1__VM_EXEC_OUTPUT__INIT;
	o.stream = stream;
	o.data.data = (uint8_t *)s;
	o.data.len = strlen(s);
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT;
	rep.exec_output = &o;
	fake_send(f, &rep);
}

static void send_exec_done(struct fake *f, uint64_t id, int code, int sig, bool to)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmExecReply x = HATCHERY__V1__VM_EXEC_REPLY__INIT;
	x.exit_code = code;
	x.signal = sig;
	x.timed_out = to;
	x.stdout_bytes = 12;
	x.duration_ns = 1234;
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_EXEC;
	rep.exec = &x;
	fake_send(f, &rep);
}

static void send_error(struct fake *f, uint64_t id, int code, const char *msg,
		       uint32_t guest_errno)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
	e.code = code;
	e.message = (char *)msg;
	e.guest_errno = guest_errno;
	rep.id = id;
	rep.error = &e;
	fake_send(f, &rep);
}

/* Answer pings until the client goes, so a test can show the socket is
 * still in step after an operation. */
static void serve_pings(struct fake *f)
{
	Hatchery__V1__VmRequest *req;
	while ((req = fake_recv(f))) {
		Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
		Hatchery__V1__VmPingReply p = HATCHERY__V1__VM_PING_REPLY__INIT;
		rep.id = req->id;
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_PING;
		rep.ping = &p;
		fake_send(f, &rep);
		hatch_free(req);
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	f->first = fake_recv(f);
	if (f->first)
		f->script(f);
	return NULL;
}

struct rig {
	int client;
	pthread_t th;
	struct fake f;
};

static void rig_start(struct rig *g, void (*script)(struct fake *))
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	g->client = sv[0];
	g->f.fd = sv[1];
	g->f.script = script;
	cr_assert_eq(pthread_create(&g->th, NULL, fake_main, &g->f), 0);
}

/* Close the client's end (the fake then sees EOF) and wait for the fake. */
static void rig_stop(struct rig *g)
{
	close(g->client);
	pthread_join(g->th, NULL);
	close(g->f.fd);
	cr_assert_not(g->f.bad_packet, "the fake got a packet it could not read");
}

static void rig_free(struct rig *g)
{
	hatch_free(g->f.first);
	free(g->f.file);
}

/* ---- Exec ---------------------------------------------------------------- */

struct outlog {
	int stream[8];
	char text[8][32];
	size_t n;
};

static void record_output(void *ctx, int stream, const void *data, size_t len)
{
	struct outlog *o = ctx;
	if (o->n >= 8 || len >= sizeof(o->text[0]))
		return;
	o->stream[o->n] = stream;
	memcpy(o->text[o->n], data, len);
	o->text[o->n][len] = '\0';
	o->n++;
}

static void script_exec_streams(struct fake *f)
{
	uint64_t id = f->first->id;
	send_output(f, id, HATCH_STDOUT, "hello ");
	send_output(f, id, HATCH_STDERR, "warn\n");
	send_output(f, id, HATCH_STDOUT, "world\n");
	send_exec_done(f, id, 3, 0, false);
	serve_pings(f);
}

Test(client_linux, exec_streams_output_in_order_and_the_exit_code)
{
	struct rig g = { 0 };
	rig_start(&g, script_exec_streams);
	const char *argv[] = { "sh", "-c", "echo hi" };
	const char *env[] = { "A=1" };
	struct hatch_exec x = {
		.argv = argv, .argc = 3, .env = env, .envc = 1, .cwd = "/tmp",
		.stdin_data = "in", .stdin_len = 2, .timeout_ms = 700,
		.output_limit = 99, .uid = 1000, .gid = 100,
	};
	struct outlog o = { 0 };
	Hatchery__V1__VmExecReply *rep = NULL;
	struct hatch_err err = { 0 };
	int r = hatch_vm_exec(g.client, &x, record_output, &o, &rep, &err);
	cr_assert_eq(r, 0, "exec: %s", err.msg);
	cr_assert_eq(rep->exit_code, 3);
	cr_assert_eq(rep->signal, 0);
	cr_assert_eq(rep->duration_ns, 1234);
	cr_assert_eq(o.n, 3);
	cr_assert_eq(o.stream[0], HATCH_STDOUT);
	cr_assert_str_eq(o.text[0], "hello ");
	cr_assert_eq(o.stream[1], HATCH_STDERR);
	cr_assert_str_eq(o.text[1], "warn\n");
	cr_assert_eq(o.stream[2], HATCH_STDOUT);
	cr_assert_str_eq(o.text[2], "world\n");
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	hatch_free(rep);
	rig_stop(&g);

	/* The request, as the fake decoded it. */
	Hatchery__V1__VmRequest *q = g.f.first;
	cr_assert_neq(q->id, 0);
	cr_assert_eq(q->body_case, HATCHERY__V1__VM_REQUEST__BODY_EXEC);
	Hatchery__V1__VmExecRequest *e = q->exec;
	cr_assert_eq(e->n_argv, 3);
	cr_assert_str_eq(e->argv[2], "echo hi");
	cr_assert_eq(e->n_env, 1);
	cr_assert_str_eq(e->env[0], "A=1");
	cr_assert_str_eq(e->cwd, "/tmp");
	cr_assert_eq(e->stdin.len, 2);
	cr_assert_eq(memcmp(e->stdin.data, "in", 2), 0);
	cr_assert_eq(e->timeout_ms, 700);
	cr_assert_eq(e->output_limit, 99);
	cr_assert_eq(e->uid, 1000);
	cr_assert_eq(e->gid, 100);
	rig_free(&g);
}

static void script_exec_killed(struct fake *f)
{
	send_output(f, f->first->id, HATCH_STDERR, "zzz");
	send_exec_done(f, f->first->id, 0, 9, true);
	serve_pings(f);
}

Test(client_linux, exec_reports_a_signal_and_timeout_and_null_callback_is_fine)
{
	struct rig g = { 0 };
	rig_start(&g, script_exec_killed);
	const char *argv[] = { "sleep", "100" };
	struct hatch_exec x = { .argv = argv, .argc = 2 };
	Hatchery__V1__VmExecReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_exec(g.client, &x, NULL, NULL, &rep, &err), 0, "%s", err.msg);
	cr_assert_eq(rep->signal, 9);
	cr_assert(rep->timed_out);
	cr_assert_eq(hx_exec_status(rep), 124);
	hatch_free(rep);
	rig_stop(&g);
	rig_free(&g);
}

static void script_exec_enoent(struct fake *f)
{
	send_error(f, f->first->id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR,
		   "exec nope: No such file or directory", ENOENT);
	serve_pings(f);
}

Test(client_linux, exec_agent_error_names_the_guest_errno_and_the_vm_serves_on)
{
	struct rig g = { 0 };
	rig_start(&g, script_exec_enoent);
	const char *argv[] = { "nope" };
	struct hatch_exec x = { .argv = argv, .argc = 1 };
	Hatchery__V1__VmExecReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_exec(g.client, &x, NULL, NULL, &rep, &err), -1);
	cr_assert_null(rep);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__AGENT_ERROR);
	cr_assert_eq(err.sys_errno, ENOENT);
	cr_assert(strstr(err.msg, "exec nope: No such file or directory"), "%s", err.msg);
	cr_assert(strstr(err.msg, "guest errno 2 ENOENT"), "%s", err.msg);
	cr_assert_eq(hx_exec_fail_status(&err), 127);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	rig_stop(&g);
	rig_free(&g);
}

static void script_exec_wrong_id(struct fake *f)
{
	send_output(f, f->first->id, HATCH_STDOUT, "ok");
	send_output(f, f->first->id + 1, HATCH_STDOUT, "stray");
	/* The library must shut the socket down: the next read sees EOF. */
	Hatchery__V1__VmRequest *next = fake_recv(f);
	hatch_free(next);
}

Test(client_linux, exec_reply_with_a_wrong_id_is_a_protocol_error_that_ends_the_lease)
{
	struct rig g = { 0 };
	rig_start(&g, script_exec_wrong_id);
	const char *argv[] = { "true" };
	struct hatch_exec x = { .argv = argv, .argc = 1 };
	struct outlog o = { 0 };
	Hatchery__V1__VmExecReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_exec(g.client, &x, record_output, &o, &rep, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__MALFORMED);
	cr_assert(strstr(err.msg, "does not match"), "%s", err.msg);
	cr_assert_eq(o.n, 1, "output after the stray reply was delivered");
	cr_assert_eq(hx_exec_fail_status(&err), 125);
	pthread_join(g.th, NULL); /* before the client closes: EOF came from shutdown */
	cr_assert(g.f.saw_eof);
	cr_assert_neq(hatch_vm_ping(g.client, &err), 0);
	close(g.client);
	close(g.f.fd);
	rig_free(&g);
}

static void script_exec_wrong_body(struct fake *f)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmPingReply p = HATCHERY__V1__VM_PING_REPLY__INIT;
	rep.id = f->first->id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_PING;
	rep.ping = &p;
	fake_send(f, &rep);
	hatch_free(fake_recv(f));
}

Test(client_linux, exec_reply_with_an_unexpected_body_is_a_protocol_error)
{
	struct rig g = { 0 };
	rig_start(&g, script_exec_wrong_body);
	const char *argv[] = { "true" };
	struct hatch_exec x = { .argv = argv, .argc = 1 };
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_exec(g.client, &x, NULL, NULL, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__MALFORMED);
	pthread_join(g.th, NULL);
	cr_assert(g.f.saw_eof);
	close(g.client);
	close(g.f.fd);
	rig_free(&g);
}

Test(client_linux, exec_refuses_what_cannot_be_sent_without_sending)
{
	struct hatch_err err = { 0 };
	struct hatch_exec empty = { 0 };
	cr_assert_eq(hatch_vm_exec(-1, &empty, NULL, NULL, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);

	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	static char big[IPC_MAX_MSG];
	const char *argv[] = { "cat" };
	struct hatch_exec x = { .argv = argv, .argc = 1, .stdin_data = big,
				.stdin_len = sizeof(big) };
	cr_assert_eq(hatch_vm_exec(sv[0], &x, NULL, NULL, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	/* Nothing went out, and the socket was left alone. */
	uint8_t b;
	cr_assert_eq(recv(sv[1], &b, 1, MSG_DONTWAIT), -1);
	cr_assert_eq(errno, EAGAIN);
	close(sv[0]);
	close(sv[1]);
}

/* ---- WriteFile ------------------------------------------------------------ */

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13; /* xorshift32 */
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static int memfd_with(const uint8_t *p, size_t n)
{
	int fd = memfd_create("src", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* Reassemble a WriteFile: the first packet, then chunks of the same id
 * until `size` bytes. Then answer. */
static void script_write_file(struct fake *f)
{
	Hatchery__V1__VmWriteFileRequest *w = f->first->write_file;
	if (f->first->body_case != HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE || !w) {
		f->bad_packet = true;
		return;
	}
	f->file_size = w->size;
	f->file = malloc(w->size ? w->size : 1);
	if (w->data.len > w->size) {
		f->bad_packet = true;
		return;
	}
	if (w->data.len)
		memcpy(f->file, w->data.data, w->data.len);
	f->file_len = w->data.len;
	while (f->file_len < f->file_size) {
		Hatchery__V1__VmRequest *c = fake_recv(f);
		if (!c)
			return; /* EOF: the library gave up half-way */
		if (c->id != f->first->id)
			f->bad_id = true;
		if (c->body_case != HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK ||
		    c->file_chunk->data.len > f->file_size - f->file_len) {
			f->bad_packet = true;
			hatch_free(c);
			return;
		}
		memcpy(f->file + f->file_len, c->file_chunk->data.data, c->file_chunk->data.len);
		f->file_len += c->file_chunk->data.len;
		hatch_free(c);
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmWriteFileReply wr = HATCHERY__V1__VM_WRITE_FILE_REPLY__INIT;
	wr.bytes_written = f->file_len;
	rep.id = f->first->id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_WRITE_FILE;
	rep.write_file = &wr;
	fake_send(f, &rep);
	serve_pings(f);
}

Test(client_linux, write_file_streams_5_mib_in_full_packets_byte_exact)
{
	size_t n = 5 * MIB + 12345;
	uint8_t *src = malloc(n);
	fill_pattern(src, n, 42);
	int fd = memfd_with(src, n);
	struct rig g = { 0 };
	rig_start(&g, script_write_file);
	Hatchery__V1__VmWriteFileReply *rep = NULL;
	struct hatch_err err = { 0 };
	int r = hatch_vm_write_file(g.client, "/root/blob", 0600, 1, 2, fd, n, &rep, &err);
	cr_assert_eq(r, 0, "write_file: %s", err.msg);
	cr_assert_eq(rep->bytes_written, n);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	hatch_free(rep);
	rig_stop(&g);

	Hatchery__V1__VmWriteFileRequest *w = g.f.first->write_file;
	cr_assert_str_eq(w->path, "/root/blob");
	cr_assert_eq(w->mode, 0600);
	cr_assert_eq(w->uid, 1);
	cr_assert_eq(w->gid, 2);
	cr_assert_eq(w->size, n);
	cr_assert_gt(w->data.len, 60000, "the first packet carries data too");
	cr_assert_not(g.f.bad_id, "a chunk with another id");
	cr_assert_leq(g.f.max_pkt, IPC_MAX_MSG);
	cr_assert_leq(g.f.max_pkt, IPC_MAX_MSG - 64, "no room left for a relay's envelope");
	cr_assert_geq(g.f.max_pkt, IPC_MAX_MSG - 64 - 16, "packets not filled");
	/* Packets are filled: no more than one beyond the minimum, plus the ping. */
	size_t min_pkts = (n + IPC_MAX_MSG - 100 - 1) / (IPC_MAX_MSG - 100);
	cr_assert_leq(g.f.npkts, min_pkts + 2, "%zu packets for %zu bytes", g.f.npkts, n);
	cr_assert_eq(g.f.file_len, n);
	cr_assert_eq(memcmp(g.f.file, src, n), 0, "the reassembled file differs");
	close(fd);
	free(src);
	rig_free(&g);
}

struct feeder {
	int fd;
	const uint8_t *p;
	size_t n;
};

/* Feed a pipe in odd-sized pieces, so the library meets short reads. */
static void *feed_pipe(void *arg)
{
	struct feeder *fe = arg;
	size_t off = 0, step = 1;
	while (off < fe->n) {
		size_t k = step < fe->n - off ? step : fe->n - off;
		ssize_t w = write(fe->fd, fe->p + off, k);
		if (w <= 0)
			break;
		off += (size_t)w;
		step = step * 7 % 9973 + 1;
	}
	close(fe->fd);
	return NULL;
}

Test(client_linux, write_file_from_a_pipe_with_short_reads)
{
	size_t n = 300 * 1024 + 7;
	uint8_t *src = malloc(n);
	fill_pattern(src, n, 7);
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	struct feeder fe = { .fd = p[1], .p = src, .n = n };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, feed_pipe, &fe), 0);
	struct rig g = { 0 };
	rig_start(&g, script_write_file);
	struct hatch_err err = { 0 };
	int r = hatch_vm_write_file(g.client, "/p", 0, 0, 0, p[0], n, NULL, &err);
	cr_assert_eq(r, 0, "write_file: %s", err.msg);
	pthread_join(th, NULL);
	rig_stop(&g);
	cr_assert_eq(g.f.file_len, n);
	cr_assert_eq(memcmp(g.f.file, src, n), 0);
	close(p[0]);
	free(src);
	rig_free(&g);
}

Test(client_linux, write_file_of_zero_bytes_is_one_packet)
{
	int fd = memfd_with((const uint8_t *)"", 0);
	struct rig g = { 0 };
	rig_start(&g, script_write_file);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_write_file(g.client, "/empty", 0, 0, 0, fd, 0, NULL, &err), 0,
		     "%s", err.msg);
	rig_stop(&g);
	cr_assert_eq(g.f.npkts, 1);
	cr_assert_eq(g.f.file_size, 0);
	close(fd);
	rig_free(&g);
}

Test(client_linux, write_file_source_shorter_than_size_ends_the_lease)
{
	size_t have = 200000;
	uint8_t *src = calloc(1, have);
	int fd = memfd_with(src, have);
	struct rig g = { 0 };
	rig_start(&g, script_write_file);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_write_file(g.client, "/x", 0, 0, 0, fd, have + 1, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	cr_assert(strstr(err.msg, "ended after 200000 of 200001"), "%s", err.msg);
	pthread_join(g.th, NULL);
	cr_assert(g.f.saw_eof, "the socket was not shut down");
	cr_assert_lt(g.f.file_len, have + 1);
	close(g.client);
	close(g.f.fd);
	close(fd);
	free(src);
	rig_free(&g);
}

Test(client_linux, write_file_source_longer_than_size_never_completes_the_file)
{
	size_t have = 200000;
	uint8_t *src = calloc(1, have);
	int fd = memfd_with(src, have);
	struct rig g = { 0 };
	rig_start(&g, script_write_file);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_write_file(g.client, "/x", 0, 0, 0, fd, have - 1, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT);
	cr_assert(strstr(err.msg, "more than 199999"), "%s", err.msg);
	pthread_join(g.th, NULL);
	cr_assert(g.f.saw_eof);
	cr_assert_lt(g.f.file_len, have - 1, "the last packet went out anyway");
	close(g.client);
	close(g.f.fd);
	close(fd);
	free(src);
	rig_free(&g);
}

static void script_write_file_eacces(struct fake *f)
{
	/* Drain the data as the agent does, then refuse. */
	Hatchery__V1__VmWriteFileRequest *w = f->first->write_file;
	uint64_t got = w->data.len;
	while (got < w->size) {
		Hatchery__V1__VmRequest *c = fake_recv(f);
		if (!c)
			return;
		got += c->file_chunk ? c->file_chunk->data.len : 0;
		hatch_free(c);
	}
	send_error(f, f->first->id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR,
		   "open /ro/x: Permission denied", EACCES);
	serve_pings(f);
}

Test(client_linux, write_file_agent_error_after_the_data_leaves_the_vm_serving)
{
	size_t n = 150000;
	uint8_t *src = calloc(1, n);
	int fd = memfd_with(src, n);
	struct rig g = { 0 };
	rig_start(&g, script_write_file_eacces);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_write_file(g.client, "/ro/x", 0, 0, 0, fd, n, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__AGENT_ERROR);
	cr_assert_eq(err.sys_errno, EACCES);
	cr_assert(strstr(err.msg, "(guest errno 13 EACCES)"), "%s", err.msg);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	rig_stop(&g);
	close(fd);
	free(src);
	rig_free(&g);
}

/* ---- ReadFile ------------------------------------------------------------- */

static void send_chunk(struct fake *f, uint64_t id, const uint8_t *p, size_t n)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmFileChunk c = HATCHERY__V1__VM_FILE_CHUNK__INIT;
	c.data.data = (uint8_t *)p;
	c.data.len = n;
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_FILE_CHUNK;
	rep.file_chunk = &c;
	fake_send(f, &rep);
}

static void send_read_done(struct fake *f, uint64_t id, uint64_t size)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmReadFileReply rr = HATCHERY__V1__VM_READ_FILE_REPLY__INIT;
	rr.size = size;
	rr.mode = 0100640;
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_READ_FILE;
	rep.read_file = &rr;
	fake_send(f, &rep);
}

/* Send f->send_data in chunks of varied sizes up to a full packet's. */
static void script_read_file(struct fake *f)
{
	uint64_t id = f->first->id;
	size_t off = 0, step = 1000;
	while (off < f->send_len) {
		size_t k = step < f->send_len - off ? step : f->send_len - off;
		send_chunk(f, id, f->send_data + off, k);
		off += k;
		step = step * 3 % 65000 + 1;
	}
	send_read_done(f, id, f->send_len);
	serve_pings(f);
}

Test(client_linux, read_file_streams_into_a_file_byte_exact)
{
	size_t n = 3 * MIB + 3;
	uint8_t *src = malloc(n);
	fill_pattern(src, n, 99);
	int dst = memfd_create("dst", MFD_CLOEXEC);
	cr_assert_geq(dst, 0);
	struct rig g = { .f = { .send_data = src, .send_len = n } };
	rig_start(&g, script_read_file);
	Hatchery__V1__VmReadFileReply *rep = NULL;
	struct hatch_err err = { 0 };
	int r = hatch_vm_read_file(g.client, "/etc/big", 4 * MIB, dst, &rep, &err);
	cr_assert_eq(r, 0, "read_file: %s", err.msg);
	cr_assert_eq(rep->size, n);
	cr_assert_eq(rep->mode, 0100640);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	hatch_free(rep);
	rig_stop(&g);
	cr_assert_str_eq(g.f.first->read_file->path, "/etc/big");
	cr_assert_eq(g.f.first->read_file->max_size, 4 * MIB);

	uint8_t *got = malloc(n + 1);
	cr_assert_eq(pread(dst, got, n + 1, 0), (ssize_t)n);
	cr_assert_eq(memcmp(got, src, n), 0, "the file read differs");
	free(got);
	close(dst);
	free(src);
	rig_free(&g);
}

struct drain {
	int fd;
	uint8_t *buf;
	size_t n;
};

static void *drain_pipe(void *arg)
{
	struct drain *d = arg;
	for (;;) {
		ssize_t r = read(d->fd, d->buf + d->n, 65536);
		if (r <= 0)
			break;
		d->n += (size_t)r;
	}
	return NULL;
}

Test(client_linux, read_file_streams_into_a_pipe_byte_exact)
{
	size_t n = MIB + 17;
	uint8_t *src = malloc(n);
	fill_pattern(src, n, 5);
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	struct drain d = { .fd = p[0], .buf = malloc(n + 65536) };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, drain_pipe, &d), 0);
	struct rig g = { .f = { .send_data = src, .send_len = n } };
	rig_start(&g, script_read_file);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_read_file(g.client, "/x", 0, p[1], NULL, &err), 0, "%s", err.msg);
	close(p[1]);
	pthread_join(th, NULL);
	rig_stop(&g);
	cr_assert_eq(d.n, n);
	cr_assert_eq(memcmp(d.buf, src, n), 0);
	close(p[0]);
	free(d.buf);
	free(src);
	rig_free(&g);
}

static int stop_at_second(void *ctx, const void *data, size_t len, struct hatch_err *err)
{
	int *calls = ctx;
	if (++*calls == 2)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, ENOSPC, "disk");
	return 0;
}

Test(client_linux, read_file_callback_failure_drains_the_operation)
{
	size_t n = 200000;
	uint8_t *src = calloc(1, n);
	struct rig g = { .f = { .send_data = src, .send_len = n } };
	rig_start(&g, script_read_file);
	int calls = 0;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_read_file_cb(g.client, "/x", 0, stop_at_second, &calls, NULL,
					   &err), -1);
	cr_assert_eq(calls, 2, "the callback was called after it said stop");
	cr_assert_eq(err.sys_errno, ENOSPC);
	cr_assert(strstr(err.msg, "disk"), "%s", err.msg);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	rig_stop(&g);
	free(src);
	rig_free(&g);
}

static void script_read_file_lies(struct fake *f)
{
	send_chunk(f, f->first->id, (const uint8_t *)"abc", 3);
	send_read_done(f, f->first->id, 4);
	serve_pings(f);
}

Test(client_linux, read_file_size_that_disagrees_with_the_chunks_is_malformed)
{
	struct rig g = { 0 };
	rig_start(&g, script_read_file_lies);
	int dst = memfd_create("dst", MFD_CLOEXEC);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_read_file(g.client, "/x", 0, dst, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__MALFORMED);
	rig_stop(&g);
	close(dst);
	rig_free(&g);
}

static void script_read_file_over_max(struct fake *f)
{
	static uint8_t z[100];
	send_chunk(f, f->first->id, z, sizeof(z));
	send_chunk(f, f->first->id, z, sizeof(z));
	hatch_free(fake_recv(f));
}

Test(client_linux, read_file_more_than_max_size_is_a_protocol_error)
{
	struct rig g = { 0 };
	rig_start(&g, script_read_file_over_max);
	int dst = memfd_create("dst", MFD_CLOEXEC);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_read_file(g.client, "/x", 150, dst, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__MALFORMED);
	pthread_join(g.th, NULL);
	cr_assert(g.f.saw_eof);
	close(g.client);
	close(g.f.fd);
	close(dst);
	rig_free(&g);
}

static void script_read_file_efbig(struct fake *f)
{
	send_error(f, f->first->id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR,
		   "/big: 70000000 bytes, more than max_size", EFBIG);
	serve_pings(f);
}

Test(client_linux, read_file_refused_before_data)
{
	struct rig g = { 0 };
	rig_start(&g, script_read_file_efbig);
	int dst = memfd_create("dst", MFD_CLOEXEC);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_read_file(g.client, "/big", 0, dst, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__AGENT_ERROR);
	cr_assert(strstr(err.msg, "EFBIG"), "%s", err.msg);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0);
	rig_stop(&g);
	close(dst);
	rig_free(&g);
}

static void script_read_file_grows(struct fake *f)
{
	static uint8_t z[1000];
	send_chunk(f, f->first->id, z, sizeof(z));
	send_error(f, f->first->id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR,
		   "read /var/log/x: more than max_size 1500 bytes", EFBIG);
	serve_pings(f);
}

Test(client_linux, read_file_error_after_some_chunks_ends_the_operation_in_step)
{
	struct rig g = { 0 };
	rig_start(&g, script_read_file_grows);
	int dst = memfd_create("dst", MFD_CLOEXEC);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_read_file(g.client, "/var/log/x", 1500, dst, NULL, &err), -1);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__AGENT_ERROR);
	cr_assert_eq(err.sys_errno, EFBIG);
	cr_assert_eq(hatch_vm_ping(g.client, &err), 0, "in step after: %s", err.msg);
	rig_stop(&g);
	close(dst);
	rig_free(&g);
}

/* ---- ListDir, Stat ---------------------------------------------------------- */

static void script_list_dir(struct fake *f)
{
	Hatchery__V1__VmFileStat a = HATCHERY__V1__VM_FILE_STAT__INIT;
	Hatchery__V1__VmFileStat b = HATCHERY__V1__VM_FILE_STAT__INIT;
	a.name = (char *)"bin";
	a.mode = 0120777;
	a.link_target = (char *)"usr/bin";
	b.name = (char *)"etc";
	b.mode = 040755;
	b.size = 4096;
	b.mtime_ns = 1700000000123456789LL;
	Hatchery__V1__VmFileStat *ents[] = { &a, &b };
	Hatchery__V1__VmListDirReply l = HATCHERY__V1__VM_LIST_DIR_REPLY__INIT;
	l.n_entries = 2;
	l.entries = ents;
	l.truncated = true;
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	rep.id = f->first->id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_LIST_DIR;
	rep.list_dir = &l;
	fake_send(f, &rep);

	Hatchery__V1__VmRequest *q = fake_recv(f);
	if (!q)
		return;
	Hatchery__V1__VmStatReply s = HATCHERY__V1__VM_STAT_REPLY__INIT;
	b.name = q->stat ? q->stat->path : (char *)"?";
	s.stat = &b;
	Hatchery__V1__VmReply rep2 = HATCHERY__V1__VM_REPLY__INIT;
	rep2.id = q->id;
	rep2.body_case = HATCHERY__V1__VM_REPLY__BODY_STAT;
	rep2.stat = &s;
	fake_send(f, &rep2);
	hatch_free(q);
	serve_pings(f);
}

Test(client_linux, list_dir_and_stat_decode)
{
	struct rig g = { 0 };
	rig_start(&g, script_list_dir);
	Hatchery__V1__VmListDirReply *l = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_list_dir(g.client, "/", &l, &err), 0, "%s", err.msg);
	cr_assert_eq(l->n_entries, 2);
	cr_assert_str_eq(l->entries[0]->name, "bin");
	cr_assert_str_eq(l->entries[0]->link_target, "usr/bin");
	cr_assert_eq(l->entries[1]->mode, 040755);
	cr_assert(l->truncated);
	hatch_free(l);

	Hatchery__V1__VmStatReply *s = NULL;
	cr_assert_eq(hatch_vm_stat(g.client, "/etc", &s, &err), 0, "%s", err.msg);
	cr_assert_str_eq(s->stat->name, "/etc");
	cr_assert_eq(s->stat->size, 4096);
	cr_assert_eq(s->stat->mtime_ns, 1700000000123456789LL);
	hatch_free(s);
	rig_stop(&g);
	cr_assert_str_eq(g.f.first->list_dir->path, "/");
	rig_free(&g);
}

/* ---- hatchctl exec's exit statuses ------------------------------------------ */

Test(client_linux, exec_exit_status_mapping)
{
	Hatchery__V1__VmExecReply r = HATCHERY__V1__VM_EXEC_REPLY__INIT;
	cr_assert_eq(hx_exec_status(&r), 0);
	r.exit_code = 42;
	cr_assert_eq(hx_exec_status(&r), 42);
	r.exit_code = 256 + 3; /* only the low 8 bits survive, as in wait(2) */
	cr_assert_eq(hx_exec_status(&r), 3);
	r.exit_code = 0;
	r.signal = 15;
	cr_assert_eq(hx_exec_status(&r), 143);
	r.signal = 9;
	r.timed_out = true;
	cr_assert_eq(hx_exec_status(&r), 124);
	r.timed_out = false;
	r.signal = 300;
	cr_assert_eq(hx_exec_status(&r), 125);

	struct hatch_err e = { .code = HATCHERY__V1__ERROR_CODE__AGENT_ERROR,
			       .sys_errno = ENOENT };
	cr_assert_eq(hx_exec_fail_status(&e), 127);
	e.sys_errno = EACCES;
	cr_assert_eq(hx_exec_fail_status(&e), 126);
	e.code = HATCHERY__V1__ERROR_CODE__POOL_EXHAUSTED;
	cr_assert_eq(hx_exec_fail_status(&e), 125);
	e.code = HATCHERY__V1__ERROR_CODE__UNAVAILABLE;
	cr_assert_eq(hx_exec_fail_status(&e), 125);
}
