/* test_hatchctl_linux.c - hatchctl's Linux commands (exec, cp, ls, stat,
 * console) end to end against a fake hatcheryd and a fake VM, so their
 * output and exit statuses are checked before a real Linux pool exists.
 *
 * The fake daemon is a thread listening on a socket in a temporary
 * directory: it answers one Acquire with one end of a fresh SOCK_SEQPACKET
 * pair (or with POOL_EXHAUSTED for pool "none"), and serves the VM on the
 * other end itself. The VM's Exec is scripted by argv[0]. hatchctl runs as
 * a child process with its stdout and stderr in memfds.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "hatchery/client.h"
#include "hatchery/ipc.h"

TestSuite(hatchctl_linux, .timeout = 30);

#define AGENT_ERROR HATCHERY__V1__ERROR_CODE__AGENT_ERROR

struct fake {
	char dir[48], sock[64];
	int listen_fd;
	pthread_t th;
	/* what the VM saw */
	Hatchery__V1__VmExecRequest *exec; /* the last Exec, kept */
	char file_path[256];                /* the one file the VM holds */
	uint8_t *file;
	size_t file_len;
	uint32_t file_mode;
	bool released;
	int bad;                            /* a packet it could not read */
};

static uint8_t rx[IPC_MAX_MSG];

static void send_vm(int fd, uint64_t id, Hatchery__V1__VmReply *r)
{
	r->id = id;
	ipc_send_pb(fd, &r->base, NULL, 0, false);
}

static void vm_error(int fd, uint64_t id, int code, const char *msg, uint32_t e)
{
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__Error er = HATCHERY__V1__ERROR__INIT;
	er.code = code;
	er.message = (char *)msg;
	er.guest_errno = e;
	r.error = &er;
	send_vm(fd, id, &r);
}

static void vm_output(int fd, uint64_t id, int stream, const void *p, size_t n)
{
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmExecOutput o = HATCHERY__V1__VM_EXEC_OUTPUT__INIT;
	o.stream = stream;
	o.data.data = (uint8_t *)p;
	o.data.len = n;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT;
	r.exec_output = &o;
	send_vm(fd, id, &r);
}

static void vm_exec_done(int fd, uint64_t id, int code, int sig, bool to)
{
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmExecReply x = HATCHERY__V1__VM_EXEC_REPLY__INIT;
	x.exit_code = code;
	x.signal = sig;
	x.timed_out = to;
	x.duration_ns = 5000000;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_EXEC;
	r.exec = &x;
	send_vm(fd, id, &r);
}

/* The scripted programs, by argv[0]. */
static void vm_exec(struct fake *f, int fd, Hatchery__V1__VmRequest *q)
{
	const char *p = q->exec->argv[0];
	uint64_t id = q->id;
	if (!strcmp(p, "three")) {
		vm_output(fd, id, HATCH_STDOUT, "hi\n", 3);
		vm_output(fd, id, HATCH_STDERR, "oops\n", 5);
		vm_exec_done(fd, id, 3, 0, false);
	} else if (!strcmp(p, "term")) {
		vm_exec_done(fd, id, 0, 15, false);
	} else if (!strcmp(p, "slow")) {
		vm_exec_done(fd, id, 0, 9, true);
	} else if (!strcmp(p, "nope")) {
		vm_error(fd, id, AGENT_ERROR, "exec: exec nope: No such file or directory", ENOENT);
	} else if (!strcmp(p, "cat")) { /* stdin, then the file held, to stdout */
		vm_output(fd, id, HATCH_STDOUT, q->exec->stdin.data, q->exec->stdin.len);
		for (size_t off = 0; off < f->file_len; off += 60000)
			vm_output(fd, id, HATCH_STDOUT, f->file + off,
				  f->file_len - off < 60000 ? f->file_len - off : 60000);
		vm_exec_done(fd, id, 0, 0, false);
	} else {
		vm_exec_done(fd, id, 0, 0, false);
	}
	hatch_free(f->exec);
	f->exec = q->exec;
	q->exec = NULL; /* kept; the request's free skips it */
	q->body_case = HATCHERY__V1__VM_REQUEST__BODY__NOT_SET;
}

static Hatchery__V1__VmRequest *vm_recv(struct fake *f, int fd)
{
	struct ipc_msg m = { .buf = rx };
	int r = ipc_recv(fd, &m, false);
	if (r <= 0) {
		f->bad |= r < 0;
		return NULL;
	}
	ipc_msg_close_fds(&m);
	Hatchery__V1__VmRequest *q = hatchery__v1__vm_request__unpack(NULL, m.len, m.buf);
	f->bad |= !q;
	return q;
}

static void vm_write_file(struct fake *f, int fd, Hatchery__V1__VmRequest *q)
{
	Hatchery__V1__VmWriteFileRequest *w = q->write_file;
	free(f->file);
	f->file = malloc(w->size + 1);
	memcpy(f->file, w->data.data, w->data.len);
	f->file_len = w->data.len;
	f->file_mode = w->mode;
	snprintf(f->file_path, sizeof(f->file_path), "%s", w->path);
	while (f->file_len < w->size) {
		Hatchery__V1__VmRequest *c = vm_recv(f, fd);
		if (!c)
			return;
		if (c->id != q->id || !c->file_chunk ||
		    c->file_chunk->data.len > w->size - f->file_len) {
			f->bad = 1;
			hatch_free(c);
			return;
		}
		memcpy(f->file + f->file_len, c->file_chunk->data.data, c->file_chunk->data.len);
		f->file_len += c->file_chunk->data.len;
		hatch_free(c);
	}
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmWriteFileReply wr = HATCHERY__V1__VM_WRITE_FILE_REPLY__INIT;
	wr.bytes_written = f->file_len;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_WRITE_FILE;
	r.write_file = &wr;
	send_vm(fd, q->id, &r);
}

static void vm_read_file(struct fake *f, int fd, Hatchery__V1__VmRequest *q)
{
	const char *path = q->read_file->path;
	if (!strcmp(path, "/etc/motd") && !f->file_len) { /* a file of the image */
		free(f->file);
		f->file = (uint8_t *)strdup("welcome\n");
		f->file_len = 8;
		f->file_mode = 0644;
		snprintf(f->file_path, sizeof(f->file_path), "%s", path);
	}
	if (strcmp(path, f->file_path) != 0) {
		vm_error(fd, q->id, AGENT_ERROR, "open: No such file or directory", ENOENT);
		return;
	}
	for (size_t off = 0; off < f->file_len; off += 1000) {
		Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
		Hatchery__V1__VmFileChunk c = HATCHERY__V1__VM_FILE_CHUNK__INIT;
		c.data.data = f->file + off;
		c.data.len = f->file_len - off < 1000 ? f->file_len - off : 1000;
		r.body_case = HATCHERY__V1__VM_REPLY__BODY_FILE_CHUNK;
		r.file_chunk = &c;
		send_vm(fd, q->id, &r);
	}
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmReadFileReply rr = HATCHERY__V1__VM_READ_FILE_REPLY__INIT;
	rr.size = f->file_len;
	rr.mode = 0100000 | (f->file_mode ? f->file_mode : 0644);
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_READ_FILE;
	r.read_file = &rr;
	send_vm(fd, q->id, &r);
}

static void vm_list_stat(int fd, Hatchery__V1__VmRequest *q)
{
	Hatchery__V1__VmFileStat a = HATCHERY__V1__VM_FILE_STAT__INIT;
	Hatchery__V1__VmFileStat b = HATCHERY__V1__VM_FILE_STAT__INIT;
	a.name = (char *)"bin";
	a.mode = 0120777;
	a.link_target = (char *)"usr/bin";
	a.size = 7;
	b.name = (char *)"etc\033[31m"; /* a hostile name: must not reach the terminal raw */
	b.mode = 040755;
	b.size = 4096;
	b.mtime_ns = 86400LL * 1000000000LL;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	if (q->body_case == HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR) {
		Hatchery__V1__VmFileStat *e[] = { &a, &b };
		Hatchery__V1__VmListDirReply l = HATCHERY__V1__VM_LIST_DIR_REPLY__INIT;
		l.n_entries = 2;
		l.entries = e;
		r.body_case = HATCHERY__V1__VM_REPLY__BODY_LIST_DIR;
		r.list_dir = &l;
		send_vm(fd, q->id, &r);
		return;
	}
	Hatchery__V1__VmStatReply s = HATCHERY__V1__VM_STAT_REPLY__INIT;
	b.name = q->stat->path;
	s.stat = &b;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_STAT;
	r.stat = &s;
	send_vm(fd, q->id, &r);
}

static void vm_info(int fd, uint64_t id)
{
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmInfoReply vi = HATCHERY__V1__VM_INFO_REPLY__INIT;
	vi.kind = (char *)"linux";
	vi.pool = (char *)"lx";
	vi.kernel_release = (char *)"6.1.0-28-amd64";
	vi.guest_nproc = 2;
	vi.linux_boot_ns = 123000000;
	vi.console_tail = (char *)"[    0.000000] Linux version 6.1.0\n\033]0;pwned\007agent ready\n";
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_INFO;
	r.info = &vi;
	send_vm(fd, id, &r);
}

static void serve_vm(struct fake *f, int fd)
{
	Hatchery__V1__VmRequest *q;
	while ((q = vm_recv(f, fd))) {
		Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
		Hatchery__V1__VmPingReply pr = HATCHERY__V1__VM_PING_REPLY__INIT;
		Hatchery__V1__VmReleaseReply rr = HATCHERY__V1__VM_RELEASE_REPLY__INIT;
		switch (q->body_case) {
		case HATCHERY__V1__VM_REQUEST__BODY_PING:
			r.body_case = HATCHERY__V1__VM_REPLY__BODY_PING;
			r.ping = &pr;
			send_vm(fd, q->id, &r);
			break;
		case HATCHERY__V1__VM_REQUEST__BODY_INFO:
			vm_info(fd, q->id);
			break;
		case HATCHERY__V1__VM_REQUEST__BODY_RELEASE:
			r.body_case = HATCHERY__V1__VM_REPLY__BODY_RELEASE;
			r.release = &rr;
			send_vm(fd, q->id, &r);
			f->released = true;
			hatch_free(q);
			return;
		case HATCHERY__V1__VM_REQUEST__BODY_EXEC:
			vm_exec(f, fd, q);
			break;
		case HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE:
			vm_write_file(f, fd, q);
			break;
		case HATCHERY__V1__VM_REQUEST__BODY_READ_FILE:
			vm_read_file(f, fd, q);
			break;
		case HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR:
		case HATCHERY__V1__VM_REQUEST__BODY_STAT:
			vm_list_stat(fd, q);
			break;
		default:
			f->bad = 1;
			break;
		}
		hatch_free(q);
	}
}

/* One client, one Acquire. */
static void *fake_daemon(void *arg)
{
	struct fake *f = arg;
	int c = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	struct ipc_msg m = { .buf = rx };
	if (ipc_recv(c, &m, false) <= 0) {
		close(c);
		return NULL;
	}
	Hatchery__V1__Request *req = hatchery__v1__request__unpack(NULL, m.len, m.buf);
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	rep.id = req ? req->id : 0;
	if (!req || !req->acquire || !strcmp(req->acquire->pool, "none")) {
		Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
		e.code = HATCHERY__V1__ERROR_CODE__POOL_EXHAUSTED;
		e.message = (char *)"pool \"none\" has no ready VM";
		rep.error = &e;
		ipc_send_pb(c, &rep.base, NULL, 0, false);
		hatch_free(req);
		close(c);
		return NULL;
	}
	hatch_free(req);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return NULL;
	Hatchery__V1__AcquireReply a = HATCHERY__V1__ACQUIRE_REPLY__INIT;
	a.child_id = 1;
	a.child_pid = 4242;
	a.hit = true;
	rep.body_case = HATCHERY__V1__REPLY__BODY_ACQUIRE;
	rep.acquire = &a;
	ipc_send_pb(c, &rep.base, &sv[0], 1, false);
	close(sv[0]);
	close(c);
	serve_vm(f, sv[1]);
	close(sv[1]);
	return NULL;
}

static void fake_start(struct fake *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/hatchctl-test-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/s", f->dir);
	f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	cr_assert_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f->listen_fd, 4), 0);
	cr_assert_eq(pthread_create(&f->th, NULL, fake_daemon, f), 0);
}

static void fake_stop(struct fake *f)
{
	/* A daemon whose client never came (a usage error) still waits in
	 * accept(): come and go, so it sees end-of-stream and returns. */
	int w = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	connect(w, (struct sockaddr *)&sa, sizeof(sa));
	close(w);
	pthread_join(f->th, NULL);
	close(f->listen_fd);
	unlink(f->sock);
	rmdir(f->dir);
	/* f->exec and f->file stay for the test to read: fake_free(). */
	cr_assert_not(f->bad, "the fake got a packet it could not read");
}

/* What the fake kept for the test to read. */
static void fake_free(struct fake *f)
{
	hatch_free(f->exec);
	free(f->file);
}

struct run {
	int status;
	char out[8192], err[8192];
};

static void slurp(int fd, char *buf, size_t cap)
{
	ssize_t n = pread(fd, buf, cap - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
}

/* Run hatchctl -s SOCK ARGS... with stdin from `in` (NULL: /dev/null). */
static void hatchctl(struct fake *f, struct run *r, const char *in, const char *const *args)
{
	const char *argv[32] = { HATCHCTL_PATH, "-s", f->sock };
	size_t n = 3;
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	int out = memfd_create("out", 0), err = memfd_create("err", 0);
	int infd = memfd_create("in", 0);
	if (in)
		cr_assert_eq(write(infd, in, strlen(in)), (ssize_t)strlen(in));
	lseek(infd, 0, SEEK_SET);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(infd, 0);
		dup2(out, 1);
		dup2(err, 2);
		execv(HATCHCTL_PATH, (char **)argv);
		_exit(99);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "hatchctl died of signal %d", WTERMSIG(st));
	r->status = WEXITSTATUS(st);
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
	close(out);
	close(err);
	close(infd);
}

#define CTL(f, r, in, ...) hatchctl(f, r, in, (const char *const[]){ __VA_ARGS__, NULL })

Test(hatchctl_linux, exec_streams_and_exits_with_the_programs_status)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, NULL, "exec", "lx", "--env", "LANG=C", "--env", "HOME=/tmp", "--cwd", "/srv",
	    "--", "three", "-x");
	fake_stop(&f);
	cr_assert_eq(r.status, 3, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "hi\n");
	cr_assert(strstr(r.err, "oops\n"), "%s", r.err);
	cr_assert(f.released, "the VM was not released");
	/* --env adds to the defaults; a NAME given replaces the default's. */
	cr_assert_eq(f.exec->n_argv, 2);
	cr_assert_str_eq(f.exec->argv[1], "-x");
	cr_assert_str_eq(f.exec->cwd, "/srv");
	cr_assert_eq(f.exec->n_env, 4);
	bool path = false, home = false, lang = false;
	for (size_t i = 0; i < f.exec->n_env; i++) {
		path |= !strncmp(f.exec->env[i], "PATH=/usr/local/sbin:", 21);
		home |= !strcmp(f.exec->env[i], "HOME=/tmp");
		lang |= !strcmp(f.exec->env[i], "LANG=C");
		cr_assert_str_neq(f.exec->env[i], "HOME=/root");
	}
	cr_assert(path && home && lang);
	fake_free(&f);
}

Test(hatchctl_linux, exec_without_double_dash_and_options_after_pool)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, NULL, "exec", "lx", "--timeout=1500", "true", "--not-an-option-of-ours");
	fake_stop(&f);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert_eq(f.exec->timeout_ms, 1500);
	cr_assert_eq(f.exec->n_env, 0, "no --env: the agent's defaults");
	cr_assert_str_eq(f.exec->argv[1], "--not-an-option-of-ours");
	fake_free(&f);
}

Test(hatchctl_linux, exec_signal_timeout_and_start_failures)
{
	static const struct { const char *prog; int status; const char *says; } c[] = {
		{ "term", 143, NULL },
		{ "slow", 124, "ran past its timeout" },
		{ "nope", 127, "guest errno 2 ENOENT" },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct fake f = { 0 };
		struct run r;
		fake_start(&f);
		CTL(&f, &r, NULL, "exec", "lx", "--", c[i].prog);
		fake_stop(&f);
		cr_assert_eq(r.status, c[i].status, "%s: stderr: %s", c[i].prog, r.err);
		if (c[i].says)
			cr_assert(strstr(r.err, c[i].says), "%s: %s", c[i].prog, r.err);
		fake_free(&f);
	}
}

Test(hatchctl_linux, exec_own_failures_are_125)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, NULL, "exec", "none", "--", "true");
	fake_stop(&f);
	cr_assert_eq(r.status, 125, "stderr: %s", r.err);
	cr_assert(strstr(r.err, "POOL_EXHAUSTED"), "%s", r.err);

	struct fake g = { 0 };
	fake_start(&g);
	CTL(&g, &r, NULL, "exec", "lx", "--env", "NOEQUALS", "--", "true");
	fake_stop(&g);
	cr_assert_eq(r.status, 125, "a usage error: %s", r.err);
	CTL(&g, &r, NULL, "exec", "lx");
	cr_assert_eq(r.status, 125, "no program: %s", r.err);
	fake_free(&f);
	fake_free(&g);
}

Test(hatchctl_linux, exec_put_stdin_get_round_trip)
{
	char local[] = "/tmp/hatchctl-put-XXXXXX";
	int fd = mkstemp(local);
	cr_assert_geq(fd, 0);
	size_t n = 200000; /* several packets */
	char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)('a' + i % 26);
	cr_assert_eq(write(fd, data, n), (ssize_t)n);
	fchmod(fd, 0750);
	close(fd);
	char back[64];
	snprintf(back, sizeof(back), "%s.back", local);
	char put[128], get[128];
	snprintf(put, sizeof(put), "%s:/root/f", local);
	snprintf(get, sizeof(get), "/root/f:%s", back);

	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, "IN:", "exec", "lx", "--put", put, "--get", get, "--stdin", "-", "--time",
	    "--", "cat");
	fake_stop(&f);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert_str_eq(f.file_path, "/root/f");
	cr_assert_eq(f.file_mode, 0750, "the local file's mode goes along");
	cr_assert_eq(f.file_len, n);
	cr_assert_eq(memcmp(f.file, data, n), 0);
	cr_assert_eq(strncmp(r.out, "IN:abcdef", 9), 0, "%.20s", r.out);
	cr_assert(strstr(r.err, "acquire ") && strstr(r.err, "exec "), "--time: %s", r.err);

	int b = open(back, O_RDONLY);
	cr_assert_geq(b, 0, "--get wrote nothing");
	char *got = malloc(n + 1);
	cr_assert_eq(read(b, got, n + 1), (ssize_t)n);
	cr_assert_eq(memcmp(got, data, n), 0);
	close(b);
	unlink(back);
	unlink(local);
	free(got);
	free(data);
	fake_free(&f);
}

Test(hatchctl_linux, exec_failed_get_is_125_and_leaves_no_file)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, NULL, "exec", "lx", "--get", "/nope:/tmp/hatchctl-test-never", "--", "true");
	fake_stop(&f);
	cr_assert_eq(r.status, 125, "stderr: %s", r.err);
	cr_assert(strstr(r.err, "ENOENT"), "%s", r.err);
	cr_assert_neq(access("/tmp/hatchctl-test-never", F_OK), 0);
	fake_free(&f);
}

Test(hatchctl_linux, cp_up_and_down)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, "from stdin\n", "cp", "-", "lx:/root/x");
	fake_stop(&f);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert_eq(f.file_len, 11);
	cr_assert_eq(memcmp(f.file, "from stdin\n", 11), 0);
	cr_assert_eq(f.file_mode, 0644);
	cr_assert(f.released);

	struct fake g = { 0 };
	fake_start(&g);
	CTL(&g, &r, NULL, "cp", "lx:/etc/motd", "-");
	fake_stop(&g);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "welcome\n");

	struct fake h = { 0 };
	fake_start(&h);
	CTL(&h, &r, NULL, "cp", "lx:/etc/shadow", "/tmp/hatchctl-test-never");
	fake_stop(&h);
	cr_assert_eq(r.status, 1, "an error reply: %s", r.err);
	cr_assert(strstr(r.err, "AGENT_ERROR"), "%s", r.err);
	cr_assert_neq(access("/tmp/hatchctl-test-never", F_OK), 0);

	CTL(&h, &r, NULL, "cp", "a", "b");
	cr_assert_eq(r.status, 2, "%s", r.err);
	fake_free(&f);
	fake_free(&g);
	fake_free(&h);
}

Test(hatchctl_linux, ls_stat_console)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, NULL, "ls", "lx", "/");
	fake_stop(&f);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert(strstr(r.out, "lrwxrwxrwx"), "%s", r.out);
	cr_assert(strstr(r.out, "bin -> usr/bin"), "%s", r.out);
	cr_assert(strstr(r.out, "drwxr-xr-x"), "%s", r.out);
	cr_assert(strstr(r.out, "1970-01-02 00:00:00"), "%s", r.out);
	cr_assert_null(strchr(r.out, '\033'), "an escape reached the terminal");

	struct fake g = { 0 };
	fake_start(&g);
	CTL(&g, &r, NULL, "stat", "lx", "/etc", "--json");
	fake_stop(&g);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert(strstr(r.out, "\"name\":\"/etc\"") && strstr(r.out, "\"mode\":16877"), "%s",
		  r.out);

	struct fake h = { 0 };
	fake_start(&h);
	CTL(&h, &r, NULL, "console", "lx");
	fake_stop(&h);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert(strstr(r.out, "kernel: 6.1.0-28-amd64"), "%s", r.out);
	cr_assert(strstr(r.out, "Linux version 6.1.0\n"), "%s", r.out);
	cr_assert_null(strchr(r.out, '\033'), "an escape reached the terminal");
	cr_assert_null(strchr(r.out, '\007'));
	fake_free(&f);
	fake_free(&g);
	fake_free(&h);
}

Test(hatchctl_linux, acquire_shows_the_kernel)
{
	struct fake f = { 0 };
	struct run r;
	fake_start(&f);
	CTL(&f, &r, NULL, "acquire", "lx");
	fake_stop(&f);
	cr_assert_eq(r.status, 0, "stderr: %s", r.err);
	cr_assert(strstr(r.out, "6.1.0-28-amd64"), "%s", r.out);
	cr_assert(strstr(r.out, "guest cpus online"), "%s", r.out);
	cr_assert(strstr(r.out, "linux boot"), "%s", r.out);
	fake_free(&f);
}
