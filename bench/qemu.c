/* qemu.c - the peer: QEMU microvm, two ways.
 *
 * qemu: an empty, paused QEMU microvm driven over QMP. Timed from just
 * before fork() to the QMP greeting on its stdout: the point at which a
 * QEMU-based pool could start driving a fresh VM, the counterpart of
 * hatchery's spawn-to-ready. Then qmp_capabilities and quit, timed too.
 *
 * qemuboot: QEMU microvm booting a tiny guest (bench/qemu-guest/tiny.S, a
 * PVH kernel that writes one byte to COM1 and halts). Timed from just
 * before fork() to that byte on QEMU's stdout (-serial stdio), then QEMU
 * is killed: the counterpart of hatchery's cold path (fork, jail, VM,
 * guest boot, the first call's reply).
 *
 * qemulinux: QEMU microvm booting the Linux guest of a kind = linux pool,
 * the same bzImage, initramfs, command line, memory and vCPUs, to the same
 * agent's hello frame. With acpi=on QEMU 7.2's microvm describes its
 * virtio-mmio transports in the DSDT (LNRO0005), as hatchery's VMM does;
 * a virtio-serial-device with one virtconsole is the agent's /dev/hvc0,
 * its chardev a unix socket this side listens on. Timed from just before
 * fork() to the whole first frame (4-byte length, VmReply{agent_ready})
 * read off that socket: the counterpart of hatchery's spawn -> ready.
 *
 * In all, the first run is a probe: it shows whether `-accel kvm` works
 * here at all (a failure is reported with QEMU's own words, not counted as
 * a failure of the benchmark) and warms the page cache; it is not timed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define STEP_TIMEOUT_NS bench_timeout_ns(20 * NS_PER_S)

struct qproc {
	pid_t pid;
	int in, out, err;  /* our ends; -1 once closed (EOF) */
	char obuf[8192];   /* stdout so far, NUL-terminated */
	size_t olen;
	char ebuf[2048];   /* stderr so far, NUL-terminated, cut when full */
	size_t elen;
};

struct qrun {
	uint64_t greeting_ns, caps_ns, exit_ns; /* from just before fork */
	const char *failed;                     /* the step that failed, or NULL */
	int wstatus;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The pipes of QEMU's stdin, stdout and stderr: [i][0] is the read end. */
static void close_pipes(int p[3][2])
{
	for (int i = 0; i < 3; i++) {
		close_fd(&p[i][0]);
		close_fd(&p[i][1]);
	}
}

static int spawn(const char *const *argv, struct qproc *q)
{
	const char *qemu = argv[0];
	int p[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };
	for (int i = 0; i < 3; i++) {
		if (pipe2(p[i], O_CLOEXEC) < 0) {
			int e = errno;
			close_pipes(p);
			return -e;
		}
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* If hatch-bench dies (scripts/bench's trap), so does QEMU. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* dup2 leaves the new fds without O_CLOEXEC: exactly these
		 * three survive the exec. */
		if (dup2(p[0][0], 0) < 0 || dup2(p[1][1], 1) < 0 || dup2(p[2][1], 2) < 0)
			_exit(127);
		execv(qemu, (char *const *)argv);
		dprintf(2, "exec %s: %s\n", qemu, strerror(errno));
		_exit(127);
	}
	int e = errno;
	close_fd(&p[0][0]);
	close_fd(&p[1][1]);
	close_fd(&p[2][1]);
	if (pid < 0) {
		close_pipes(p);
		return -e;
	}
	q->pid = pid;
	q->in = p[0][1];
	q->out = p[1][0];
	q->err = p[2][0];
	return 0;
}

/* One read of at most `chunk` bytes from *fd, appended to buf (len so far,
 * cut when full, kept NUL-terminated); *fd is closed at EOF or an error. */
static void read_into(int *fd, size_t chunk, char *buf, size_t cap, size_t *len)
{
	char tmp[4096];
	ssize_t r = read(*fd, tmp, chunk < sizeof(tmp) ? chunk : sizeof(tmp));
	if (r <= 0 && !(r < 0 && errno == EINTR)) {
		close_fd(fd);
	} else if (r > 0) {
		size_t room = cap - 1 - *len;
		size_t k = (size_t)r < room ? (size_t)r : room;
		memcpy(buf + *len, tmp, k);
		*len += k;
		buf[*len] = '\0';
	}
}

/* Read what is there from stdout and stderr, waiting until `deadline`.
 * Returns 0 after some progress, -ETIMEDOUT, or -EPIPE once both are shut. */
static int pump(struct qproc *q, uint64_t deadline)
{
	if (q->out < 0 && q->err < 0)
		return -EPIPE;
	struct pollfd p[2] = { { .fd = q->out, .events = POLLIN },
			       { .fd = q->err, .events = POLLIN } };
	uint64_t now = hatch_now_ns();
	if (now >= deadline)
		return -ETIMEDOUT;
	int ms = (int)((deadline - now) / NS_PER_MS) + 1;
	int n = poll(p, 2, ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if (p[0].revents)
		read_into(&q->out, 4096, q->obuf, sizeof(q->obuf), &q->olen);
	if (p[1].revents)
		read_into(&q->err, 1024, q->ebuf, sizeof(q->ebuf), &q->elen);
	return 0;
}

/* Wait for a complete stdout line containing `needle` at or after *pos;
 * on success *pos moves past that line. */
static int wait_line(struct qproc *q, const char *needle, size_t *pos, uint64_t deadline)
{
	for (;;) {
		const char *hit = strstr(q->obuf + *pos, needle);
		const char *nl = hit ? strchr(hit, '\n') : NULL;
		if (nl) {
			*pos = (size_t)(nl + 1 - q->obuf);
			return 0;
		}
		if (q->out < 0)
			return -EPIPE;
		int r = pump(q, deadline);
		if (r < 0)
			return r;
	}
}

static int send_line(struct qproc *q, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t w = write(q->in, s, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		s += w;
		len -= (size_t)w;
	}
	return 0;
}

static void finish(struct qproc *q, struct qrun *r, bool kill_it)
{
	if (kill_it)
		kill(q->pid, SIGKILL);
	close_fd(&q->in);
	/* Collect the rest of stderr: it holds the reason when QEMU failed. */
	uint64_t deadline = hatch_now_ns() + 2 * NS_PER_S;
	while (pump(q, deadline) == 0)
		;
	close_fd(&q->out);
	close_fd(&q->err);
	while (waitpid(q->pid, &r->wstatus, 0) < 0 && errno == EINTR)
		;
}

/* A run's step failed: say which, and kill and reap QEMU. */
static void fail(struct qproc *q, struct qrun *r, const char *step)
{
	r->failed = step;
	finish(q, r, true);
}

/* Start a run: clear q and r, take *t0 just before the fork and spawn argv.
 * false when the fork failed (r->failed says so, q->ebuf why). */
static bool start(const char *const *argv, struct qproc *q, struct qrun *r, uint64_t *t0)
{
	*r = (struct qrun){ 0 };
	*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
	*t0 = hatch_now_ns();
	int e = spawn(argv, q);
	if (e < 0) {
		snprintf(q->ebuf, sizeof(q->ebuf), "fork: %s", strerror(-e));
		r->failed = "fork";
		return false;
	}
	return true;
}

#define QMP_CMD "-M microvm -accel kvm -nodefaults -no-user-config " \
		"-display none -S -qmp stdio -m 64"

/* Start an empty microvm of o->memory_mib with QMP on stdio: paused (-S)
 * or not, and with `incoming` (NULL: none) as its -incoming source. */
static bool start_microvm(const struct bench_opts *o, struct qproc *q, struct qrun *r,
			  bool paused, const char *incoming, uint64_t *t0)
{
	char mem[16];
	snprintf(mem, sizeof(mem), "%u", o->memory_mib);
	const char *argv[20] = {
		o->qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults",
		"-no-user-config", "-display", "none", "-qmp", "stdio", "-m", mem,
	};
	int n = 13;
	if (paused)
		argv[n++] = "-S";
	if (incoming) {
		argv[n++] = "-incoming";
		argv[n++] = incoming;
	}
	argv[n] = NULL;
	return start(argv, q, r, t0);
}

static void qmp_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	uint64_t t0;
	if (!start_microvm(o, q, r, true, NULL, &t0))
		return;
	size_t pos = 0;
	if (wait_line(q, "{\"QMP\"", &pos, t0 + STEP_TIMEOUT_NS) < 0) {
		fail(q, r, "waiting for the QMP greeting");
		return;
	}
	r->greeting_ns = hatch_now_ns() - t0;
	uint64_t t = hatch_now_ns();
	if (send_line(q, "{\"execute\":\"qmp_capabilities\"}\n") < 0 ||
	    wait_line(q, "\"return\"", &pos, t + STEP_TIMEOUT_NS) < 0) {
		fail(q, r, "qmp_capabilities");
		return;
	}
	r->caps_ns = hatch_now_ns() - t0;
	t = hatch_now_ns();
	if (send_line(q, "{\"execute\":\"quit\"}\n") < 0) {
		fail(q, r, "quit");
		return;
	}
	/* Exited = stdout at EOF and reaped. */
	while (q->out >= 0) {
		if (pump(q, t + STEP_TIMEOUT_NS) == -ETIMEDOUT) {
			fail(q, r, "waiting for exit after quit");
			return;
		}
	}
	finish(q, r, false);
	r->exit_ns = hatch_now_ns() - t0;
	if (!WIFEXITED(r->wstatus) || WEXITSTATUS(r->wstatus) != 0)
		r->failed = "exit status after quit";
}

#define BOOT_CMD "-M microvm -accel kvm -nodefaults -no-user-config -display none " \
		 "-serial stdio -m 64 -kernel tiny.elf"

static void boot_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	char mem[16];
	snprintf(mem, sizeof(mem), "%u", o->memory_mib);
	const char *argv[] = {
		o->qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults",
		"-no-user-config", "-display", "none", "-serial", "stdio",
		"-m", mem, "-kernel", o->qemu_guest, NULL,
	};
	uint64_t t0;
	if (!start(argv, q, r, &t0))
		return;
	/* The first byte on stdout is the guest's. */
	while (q->olen == 0) {
		int p = pump(q, t0 + STEP_TIMEOUT_NS);
		if (p < 0) {
			fail(q, r, p == -ETIMEDOUT ? "waiting for the guest's byte (20 s)"
					     : "waiting for the guest's byte (QEMU exited)");
			return;
		}
	}
	r->greeting_ns = hatch_now_ns() - t0;
	finish(q, r, true);
	if (q->obuf[0] != '!')
		r->failed = "the guest's byte (expected '!')";
}

/* Trim the trailing newlines (and blanks) off captured stderr. */
static void flatten(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* One way of running QEMU, and the rows that report it. */
struct peer {
	const char *status_name;  /* the status row: its name, label, */
	const char *status_label;
	const char *cmd;          /* and the command line it records */
	const char *kernel;       /* recorded too, if not NULL */
	const char *unusable;     /* known before any run: why it cannot run */
	const char *name;         /* messages: "NAME: 3 runs failed" */
	const char *run_name;     /* messages: "RUN_NAME 2: ..." */
	void (*run)(const struct bench_opts *o, struct qproc *q, struct qrun *r);
};

static void status_row(FILE *rows, const struct bench_opts *o, const struct peer *p,
		       const char *status, const char *error, const char *stderr_text)
{
	row_begin(rows, p->status_name, "-", p->status_label);
	row_str(rows, "status", status);
	if (o->qemu)
		row_str(rows, "binary", o->qemu);
	if (o->qemu_version)
		row_str(rows, "version", o->qemu_version);
	if (p->kernel)
		row_str(rows, "kernel", p->kernel);
	row_str(rows, "cmd", p->cmd);
	if (error)
		row_str(rows, "error", error);
	if (stderr_text && *stderr_text) {
		/* Keep line breaks visible once row_str has flattened them. */
		char buf[2048];
		size_t k = 0;
		for (const char *c = stderr_text; *c && k + 4 < sizeof(buf); c++) {
			if (*c == '\n') {
				memcpy(buf + k, " | ", 3);
				k += 3;
			} else {
				buf[k++] = *c;
			}
		}
		buf[k] = '\0';
		row_str(rows, "stderr", buf);
	}
	row_end(rows);
}

/* What the timed runs took, in ns from just before the fork. */
struct peer_samples {
	struct samples greeting, caps, exit; /* struct qrun's */
	unsigned failures;
	bool ran; /* false: the peer could not run at all (the status row says why) */
};

static void peer_samples_free(struct peer_samples *ps)
{
	samples_free(&ps->greeting);
	samples_free(&ps->caps);
	samples_free(&ps->exit);
}
#define _cleanup_peer_samples_ __attribute__((cleanup(peer_samples_free)))

/* The status row, and unless QEMU is missing or p is unusable, a probe run
 * and then o->count timed ones into *ps. A probe that fails is reported
 * in the status row with QEMU's own words; the benchmark fails (-1) only
 * when too many timed runs fail. */
static int run_peer(const struct bench_opts *o, const struct peer *p, FILE *rows,
		    struct peer_samples *ps, struct hatch_err *err)
{
	if (!o->qemu || access(o->qemu, X_OK) < 0) {
		status_row(rows, o, p, "not installed", "qemu: not installed", NULL);
		return 0;
	}
	if (p->unusable) {
		status_row(rows, o, p, "error", p->unusable, NULL);
		return 0;
	}
	/* A QEMU that dies before reading our request must not take
	 * hatch-bench with it: writes to its stdin then fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	struct qproc q;
	struct qrun r;
	p->run(o, &q, &r);
	flatten(q.ebuf);
	if (r.failed) {
		char msg[2600];
		snprintf(msg, sizeof(msg), "%s failed (%s %d): %s", r.failed,
			 WIFSIGNALED(r.wstatus) ? "killed by signal" : "exit status",
			 WIFSIGNALED(r.wstatus) ? WTERMSIG(r.wstatus) : WEXITSTATUS(r.wstatus),
			 q.ebuf);
		status_row(rows, o, p, "error", msg, q.ebuf);
		return 0;
	}
	char first_stderr[sizeof(q.ebuf)];
	snprintf(first_stderr, sizeof(first_stderr), "%s", q.ebuf);

	for (unsigned i = 0; i < o->count; i++) {
		p->run(o, &q, &r);
		if (r.failed) {
			flatten(q.ebuf);
			fprintf(stderr, "hatch-bench: %s %u: %s: %s\n", p->run_name, i, r.failed,
				q.ebuf);
			if (++ps->failures > o->count / 4 + 1)
				return hatch_err_set(err, E(INTERNAL), 0, "%s: %u runs failed",
						     p->name, ps->failures);
			continue;
		}
		int e = samples_add(&ps->greeting, r.greeting_ns);
		e = e ?: samples_add(&ps->caps, r.caps_ns);
		e = e ?: samples_add(&ps->exit, r.exit_ns);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	status_row(rows, o, p, "ok", NULL, first_stderr);
	ps->ran = true;
	return 0;
}

/* The rows of the timed runs, one per series, the first with the count of
 * failed runs. */
static void peer_rows(FILE *rows, const struct series *series, size_t n, unsigned failures)
{
	const struct series_set set = { NULL, NULL, "us", 1000.0 };
	row_series_begin(rows, &set, &series[0]);
	row_num(rows, "failures", failures);
	row_end(rows);
	row_series(rows, &set, series + 1, n - 1);
}

int bench_qemu(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	const struct peer p = {
		.status_name = "qemu.status",
		.status_label = "qemu-system-x86_64 -M microvm -accel kvm, paused",
		.cmd = QMP_CMD,
		.name = "qemu",
		.run_name = "qemu run",
		.run = qmp_once,
	};
	_cleanup_peer_samples_ struct peer_samples ps = { 0 };
	if (run_peer(o, &p, rows, &ps, err) < 0)
		return -1;
	const struct series series[] = {
		{ "qemu.greeting", "qemu: fork/exec -> QMP greeting", &ps.greeting },
		{ "qemu.caps", "  -> qmp_capabilities answered", &ps.caps },
		{ "qemu.exit", "  -> exited after quit", &ps.exit },
	};
	if (ps.ran)
		peer_rows(rows, series, HATCH_ARRAY_SIZE(series), ps.failures);
	return 0;
}

/* ---- qemuboot: exec -> the tiny guest's first byte ------------------------------ */

int bench_qemu_boot(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	char unusable[1200] = "";
	if (o->qemu_guest_error)
		snprintf(unusable, sizeof(unusable), "the tiny guest could not be built: %s",
			 o->qemu_guest_error);
	else if (!o->qemu_guest)
		snprintf(unusable, sizeof(unusable), "no tiny guest (--qemu-guest)");
	else if (access(o->qemu_guest, R_OK) < 0)
		snprintf(unusable, sizeof(unusable), "the tiny guest %s: %s", o->qemu_guest,
			 strerror(errno));
	const struct peer p = {
		.status_name = "qemu.boot.status",
		.status_label = "qemu-system-x86_64 -M microvm -accel kvm booting "
				"bench/qemu-guest/tiny.elf",
		.cmd = BOOT_CMD,
		.kernel = o->qemu_guest,
		.unusable = *unusable ? unusable : NULL,
		.name = "qemu boot",
		.run_name = "qemu boot",
		.run = boot_once,
	};
	_cleanup_peer_samples_ struct peer_samples ps = { 0 };
	if (run_peer(o, &p, rows, &ps, err) < 0)
		return -1;
	const struct series boot = {
		"qemu.boot", "qemu: fork/exec -> tiny guest's first byte on the serial port",
		&ps.greeting,
	};
	if (ps.ran)
		peer_rows(rows, &boot, 1, ps.failures);
	return 0;
}

/* ---- qemurestore: exec -> running, from a migration file ------------------------ */

#define RESTORE_CMD "-M microvm -accel kvm -nodefaults -no-user-config -display none " \
		    "-qmp stdio -m 64 -incoming \"exec:cat FILE\", then cont once query-status " \
		    "leaves inmigrate (FILE: migrate of the same VM, empty and paused (-S), " \
		    "to exec:cat > FILE)"

/* Poll query-status until its reply says "running": true; once the
 * migration is in (status no longer "inmigrate"), send cont. */
static int wait_running(struct qproc *q, size_t *pos, uint64_t deadline, bool *sent_cont)
{
	for (;;) {
		if (send_line(q, "{\"execute\":\"query-status\"}\n") < 0)
			return -EPIPE;
		size_t p = *pos;
		int r = wait_line(q, "\"return\"", &p, deadline);
		if (r < 0)
			return r;
		const char *line = q->obuf + *pos;
		bool running = strstr(line, "\"running\": true") != NULL &&
			       strstr(line, "\"running\": true") < q->obuf + p;
		const char *inmig = strstr(line, "\"inmigrate\"");
		bool migrating = inmig && inmig < q->obuf + p;
		*pos = p;
		if (running)
			return 0;
		/* The source was paused (-S): the incoming VM takes its run
		 * state and stays paused once the migration is in. */
		if (!migrating && !*sent_cont) {
			if (send_line(q, "{\"execute\":\"cont\"}\n") < 0)
				return -EPIPE;
			p = *pos;
			r = wait_line(q, "\"return\"", &p, deadline);
			if (r < 0)
				return r;
			*pos = p;
			*sent_cont = true;
			continue;
		}
		if (hatch_now_ns() > deadline)
			return -ETIMEDOUT;
		bench_sleep_ns(100 * NS_PER_US);
	}
}

/* Migrate the VM to `file` (exec:cat > FILE) over QMP (capabilities
 * negotiated, *pos past the last reply) and wait until query-migrate says
 * completed. false once it failed (fail() said why and reaped QEMU). */
static bool qmp_migrate(struct qproc *q, struct qrun *r, const char *file, size_t *pos,
			uint64_t deadline)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > %s\"}}\n",
		 file);
	if (send_line(q, cmd) < 0 || wait_line(q, "\"return\"", pos, deadline) < 0) {
		fail(q, r, "save: migrate");
		return false;
	}
	for (;;) {
		if (send_line(q, "{\"execute\":\"query-migrate\"}\n") < 0) {
			fail(q, r, "save: query-migrate");
			return false;
		}
		size_t p = *pos;
		if (wait_line(q, "\"return\"", &p, deadline) < 0) {
			fail(q, r, "save: query-migrate");
			return false;
		}
		const char *line = q->obuf + *pos;
		const char *done = strstr(line, "\"completed\"");
		const char *bad = strstr(line, "\"failed\"");
		if (bad && bad < q->obuf + p) {
			fail(q, r, "save: migration failed");
			return false;
		}
		if (done && done < q->obuf + p) {
			*pos = p;
			return true;
		}
		/* Drop the replies read: a migration of a booted guest takes
		 * many polls, and obuf keeps nothing past its size. */
		memmove(q->obuf, q->obuf + p, q->olen - p + 1);
		q->olen -= p;
		*pos = 0;
		bench_sleep_ns(10 * NS_PER_MS);
	}
}

/* Once, untimed: migrate an empty, paused microvm of o->memory_mib to
 * o->snapshot. */
static void qemu_save_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	uint64_t t0;
	if (!start_microvm(o, q, r, true, NULL, &t0))
		return;
	size_t pos = 0;
	if (wait_line(q, "{\"QMP\"", &pos, t0 + STEP_TIMEOUT_NS) < 0 ||
	    send_line(q, "{\"execute\":\"qmp_capabilities\"}\n") < 0 ||
	    wait_line(q, "\"return\"", &pos, t0 + STEP_TIMEOUT_NS) < 0) {
		fail(q, r, "save: QMP greeting / capabilities");
		return;
	}
	if (!qmp_migrate(q, r, o->snapshot, &pos, t0 + STEP_TIMEOUT_NS))
		return;
	send_line(q, "{\"execute\":\"quit\"}\n");
	while (q->out >= 0)
		if (pump(q, t0 + STEP_TIMEOUT_NS) == -ETIMEDOUT)
			break;
	finish(q, r, true);
}

static void restore_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	char inc[1100];
	snprintf(inc, sizeof(inc), "exec:cat %s", o->snapshot);
	uint64_t t0;
	if (!start_microvm(o, q, r, false, inc, &t0))
		return;
	size_t pos = 0;
	if (wait_line(q, "{\"QMP\"", &pos, t0 + STEP_TIMEOUT_NS) < 0) {
		fail(q, r, "waiting for the QMP greeting");
		return;
	}
	r->caps_ns = hatch_now_ns() - t0;
	if (send_line(q, "{\"execute\":\"qmp_capabilities\"}\n") < 0 ||
	    wait_line(q, "\"return\"", &pos, t0 + STEP_TIMEOUT_NS) < 0) {
		fail(q, r, "qmp_capabilities");
		return;
	}
	bool cont = false;
	if (wait_running(q, &pos, t0 + STEP_TIMEOUT_NS, &cont) < 0) {
		fail(q, r, "waiting for query-status running");
		return;
	}
	r->greeting_ns = hatch_now_ns() - t0;
	finish(q, r, true);
	r->exit_ns = 0;
}

int bench_qemu_restore(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	char unusable[3000] = "";
	struct stat st = { 0 };
	if (!o->snapshot) {
		snprintf(unusable, sizeof(unusable), "no --snapshot FILE");
	} else if (o->qemu && access(o->qemu, X_OK) == 0) {
		signal(SIGPIPE, SIG_IGN);
		struct qproc q;
		struct qrun r;
		unlink(o->snapshot);
		qemu_save_once(o, &q, &r);
		flatten(q.ebuf);
		if (r.failed)
			snprintf(unusable, sizeof(unusable), "saving the migration file: %s: %s",
				 r.failed, q.ebuf);
		else if (stat(o->snapshot, &st) < 0 || st.st_size == 0)
			snprintf(unusable, sizeof(unusable), "the migration file %s is missing "
				 "or empty: %s", o->snapshot, q.ebuf);
	}
	const struct peer p = {
		.status_name = "qemu.restore.status",
		.status_label = "qemu-system-x86_64 -M microvm -accel kvm -incoming from a file",
		.cmd = RESTORE_CMD,
		.unusable = *unusable ? unusable : NULL,
		.name = "qemu restore",
		.run_name = "qemu restore",
		.run = restore_once,
	};
	_cleanup_peer_samples_ struct peer_samples ps = { 0 };
	if (run_peer(o, &p, rows, &ps, err) < 0)
		return -1;
	const struct series series[] = {
		{ "qemu.restore", "qemu: fork/exec -incoming -> query-status running", &ps.greeting },
		{ "qemu.restore.greeting", "  -> QMP greeting", &ps.caps },
	};
	if (ps.ran) {
		const struct series_set set = { NULL, NULL, "us", 1000.0 };
		row_series_begin(rows, &set, &series[0]);
		row_num(rows, "failures", ps.failures);
		row_num(rows, "file_st_size", (double)st.st_size);
		row_num(rows, "file_allocated_bytes", (double)st.st_blocks * 512.0);
		row_str(rows, "guest", "none: an empty microvm, paused (-S) when migrated");
		row_end(rows);
		row_series(rows, &set, series + 1, 1);
	}
	return 0;
}

/* ---- qemulinux: exec -> the agent's hello frame --------------------------------- */

#define LINUX_CMD "-M microvm,acpi=on -accel kvm -cpu host -smp VCPUS -m MEMORY " \
		  "-nodefaults -no-user-config -display none -serial stdio -kernel VMLINUZ " \
		  "-initrd INITRAMFS -append CMDLINE -device virtio-serial-device " \
		  "-chardev socket,id=agent,path=SOCK -device virtconsole,chardev=agent"

/* The agent's first frame: 4-byte LE length and a small VmReply. */
#define HELLO_MAX 4096u

/* A listening unix socket at `path` (in a fresh directory of ours). */
static int listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Wait for QEMU to connect to lfd and for the whole first frame on that
 * connection, reading QEMU's stdout (the guest's console) and stderr all
 * along. *connect_ns, *frame_ns: when each happened (hatch_now_ns). With
 * keep, the connection is handed out in *keep on success (else closed). */
static int wait_hello(struct qproc *q, int lfd, uint64_t deadline, uint8_t *buf,
		      size_t *len, uint64_t *connect_ns, uint64_t *frame_ns, int *keep)
{
	int cfd = -1, r = 0;
	*len = 0;
	for (;;) {
		struct pollfd p[3] = { { .fd = cfd >= 0 ? cfd : lfd, .events = POLLIN },
				       { .fd = q->out, .events = POLLIN },
				       { .fd = q->err, .events = POLLIN } };
		uint64_t now = hatch_now_ns();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		int n = poll(p, 3, (int)((deadline - now) / NS_PER_MS) + 1);
		if (n < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		if (n <= 0)
			continue;
		if (p[1].revents)
			read_into(&q->out, 4096, q->obuf, sizeof(q->obuf), &q->olen);
		if (p[2].revents)
			read_into(&q->err, 1024, q->ebuf, sizeof(q->ebuf), &q->elen);
		if (q->out < 0 && q->err < 0 && cfd < 0) {
			r = -EPIPE; /* QEMU exited before it connected */
			break;
		}
		if (!p[0].revents)
			continue;
		if (cfd < 0) {
			cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (cfd < 0 && errno != EINTR && errno != EAGAIN) {
				r = -errno;
				break;
			}
			if (cfd >= 0)
				*connect_ns = hatch_now_ns();
			continue;
		}
		ssize_t k = read(cfd, buf + *len, HELLO_MAX - *len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -errno : -EPIPE;
			break;
		}
		*len += (size_t)k;
		if (*len < 4)
			continue;
		uint32_t flen = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 |
				(uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
		if (flen > HELLO_MAX - 4) {
			r = -EMSGSIZE;
			break;
		}
		if (*len >= 4 + flen) {
			*frame_ns = hatch_now_ns();
			*len = 4 + flen;
			break;
		}
	}
	if (keep && r == 0) {
		*keep = cfd;
		cfd = -1;
	}
	if (cfd >= 0)
		close(cfd);
	return r;
}

static void linux_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	char dir[] = "/tmp/hatch-bench-qemu.XXXXXX";
	char sock[64], chardev[96], mem[16], smp[16];
	/* Not timed: a pool has its sockets before it spawns too. */
	if (!mkdtemp(dir)) {
		*r = (struct qrun){ .failed = "mkdtemp" };
		*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
		snprintf(q->ebuf, sizeof(q->ebuf), "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
	snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s", sock);
	snprintf(mem, sizeof(mem), "%u", o->memory_mib);
	snprintf(smp, sizeof(smp), "%u", o->vcpus);
	int lfd = listen_unix(sock);
	if (lfd < 0) {
		*r = (struct qrun){ .failed = "listen on the agent's socket" };
		*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
		snprintf(q->ebuf, sizeof(q->ebuf), "%s: %s", sock, strerror(-lfd));
		rmdir(dir);
		return;
	}
	/* HATCH_BENCH_QEMU_ACCEL=tcg: only to try this phase on a host whose
	 * KVM cannot boot Linux; such figures mean nothing. */
	const char *accel = getenv("HATCH_BENCH_QEMU_ACCEL");
	bool tcg = accel && strcmp(accel, "tcg") == 0;
	const char *argv[] = {
		o->qemu, "-M", "microvm,acpi=on", "-accel", tcg ? "tcg" : "kvm",
		"-cpu", tcg ? "max" : "host", "-smp", smp, "-m", mem, "-nodefaults",
		"-no-user-config", "-display", "none", "-serial", "stdio",
		"-kernel", o->kernel, "-initrd", o->initrd, "-append", o->cmdline,
		"-device", "virtio-serial-device", "-chardev", chardev,
		"-device", "virtconsole,chardev=agent", NULL,
	};
	uint64_t t0, tc = 0, tf = 0;
	uint8_t buf[HELLO_MAX];
	size_t len = 0;
	if (start(argv, q, r, &t0)) {
		int w = wait_hello(q, lfd, t0 + bench_timeout_ns(60 * NS_PER_S), buf, &len,
				   &tc, &tf, NULL);
		if (w < 0) {
			fail(q, r, w == -ETIMEDOUT ? "waiting for the agent's hello (60 s)"
				   : tc ? "waiting for the agent's hello (the chardev closed)"
					: "waiting for QEMU to connect the agent's chardev");
		} else {
			r->greeting_ns = tf - t0;
			r->caps_ns = tc - t0;
			finish(q, r, true);
			Hatchery__V1__VmReply *m = hatchery__v1__vm_reply__unpack(NULL, len - 4,
										  buf + 4);
			if (!m || m->body_case != HATCHERY__V1__VM_REPLY__BODY_AGENT_READY)
				r->failed = "the first frame is not VmReply{agent_ready}";
			if (m)
				hatchery__v1__vm_reply__free_unpacked(m, NULL);
		}
	}
	close(lfd);
	unlink(sock);
	rmdir(dir);
}

int bench_qemu_linux(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	char unusable[1200] = "";
	if (!o->kernel || !o->initrd || !o->cmdline)
		snprintf(unusable, sizeof(unusable), "--kernel, --initrd and --cmdline are needed");
	else if (access(o->kernel, R_OK) < 0 || access(o->initrd, R_OK) < 0)
		snprintf(unusable, sizeof(unusable), "the kernel %s or initramfs %s: %s",
			 o->kernel, o->initrd, strerror(errno));
	const struct peer p = {
		.status_name = "qemu.linux.status",
		.status_label = "qemu-system-x86_64 -M microvm,acpi=on -accel kvm booting the "
				"linux pool's kernel and initramfs to the agent",
		.cmd = LINUX_CMD,
		.kernel = o->kernel,
		.unusable = *unusable ? unusable : NULL,
		.name = "qemu linux",
		.run_name = "qemu linux boot",
		.run = linux_once,
	};
	_cleanup_peer_samples_ struct peer_samples ps = { 0 };
	if (run_peer(o, &p, rows, &ps, err) < 0)
		return -1;
	if (!ps.ran)
		return 0;
	char label[200];
	snprintf(label, sizeof(label),
		 "qemu microvm: fork/exec -> the agent's hello frame (%u MiB, %u vCPU)",
		 o->memory_mib, o->vcpus);
	const struct series boot[] = {
		{ "qemu.linux.boot", label, &ps.greeting },
		{ "qemu.linux.connect", "  -> QEMU connected the agent's chardev (no guest code yet)",
		  &ps.caps },
	};
	const struct series_set set = { NULL, NULL, "us", 1000.0 };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(boot); i++) {
		row_series_begin(rows, &set, &boot[i]);
		if (i == 0) {
			row_num(rows, "failures", ps.failures);
			row_str(rows, "initrd", o->initrd);
			row_str(rows, "cmdline", o->cmdline);
		}
		row_str(rows, "section", "linux");
		if (o->emulated)
			row_num(rows, "emulated", 1);
		row_end(rows);
	}
	return 0;
}

/* ---- qemulinuxin: -incoming of the booted Linux guest -> its first Exec ---------- */

/* Measurement 15's peer. Once, untimed: QEMU boots the Linux guest as in
 * qemulinux (QMP on stdio instead of the console: -serial null) to the
 * agent's hello, is migrated over QMP to o->snapshot (exec:cat > FILE) and
 * quits. Then per run, timed from just before fork(): the same command
 * line with -incoming "exec:cat FILE" (no -S: QEMU runs the VM once the
 * migration is in, as its source was running), the agent's chardev
 * accepted, VmRequest{id 1, exec{argv ["true"]}} written as a frame and
 * read until the VmReply{id 1, exec} (exec_output frames skipped): the
 * counterpart of a restore pool's restore on lease + Exec true. */
#define LINUX_IN_CMD "-M microvm,acpi=on -accel kvm -cpu host -smp VCPUS -m MEMORY " \
		     "-nodefaults -no-user-config -display none -serial null -qmp stdio " \
		     "-kernel VMLINUZ -initrd INITRAMFS -append CMDLINE " \
		     "-device virtio-serial-device -chardev socket,id=agent,path=SOCK " \
		     "-device virtconsole,chardev=agent -incoming \"exec:cat FILE\" (FILE: the " \
		     "same command without -incoming, booted to the agent's hello, migrated " \
		     "over QMP to exec:cat > FILE); then VmRequest{exec [true]} on the chardev " \
		     "-> VmReply{exec}"

/* An Exec's reply frames are at most 64 KiB + 4 (docs/guest-linux.md). */
#define FRAME_MAX (65536u + 4u)

struct lxq {
	char dir[40], sock[64], chardev[96], mem[16], smp[16];
	int lfd;
	const char *argv[40];
};

/* The agent's socket (listening) and the command line; with `incoming`
 * (NULL: none) as -incoming. false when the socket could not be made (r
 * and q->ebuf say why). */
static bool lxq_setup(const struct bench_opts *o, struct lxq *x, const char *incoming,
		      struct qproc *q, struct qrun *r)
{
	snprintf(x->dir, sizeof(x->dir), "/tmp/hatch-bench-qemu.XXXXXX");
	x->lfd = -1;
	if (!mkdtemp(x->dir)) {
		*r = (struct qrun){ .failed = "mkdtemp" };
		*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
		snprintf(q->ebuf, sizeof(q->ebuf), "mkdtemp: %s", strerror(errno));
		return false;
	}
	snprintf(x->sock, sizeof(x->sock), "%s/agent.sock", x->dir);
	snprintf(x->chardev, sizeof(x->chardev), "socket,id=agent,path=%s", x->sock);
	snprintf(x->mem, sizeof(x->mem), "%u", o->memory_mib);
	snprintf(x->smp, sizeof(x->smp), "%u", o->vcpus);
	x->lfd = listen_unix(x->sock);
	if (x->lfd < 0) {
		*r = (struct qrun){ .failed = "listen on the agent's socket" };
		*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
		snprintf(q->ebuf, sizeof(q->ebuf), "%s: %s", x->sock, strerror(-x->lfd));
		rmdir(x->dir);
		return false;
	}
	const char *accel = getenv("HATCH_BENCH_QEMU_ACCEL"); /* as in linux_once */
	bool tcg = accel && strcmp(accel, "tcg") == 0;
	const char *a[] = {
		o->qemu, "-M", "microvm,acpi=on", "-accel", tcg ? "tcg" : "kvm",
		"-cpu", tcg ? "max" : "host", "-smp", x->smp, "-m", x->mem, "-nodefaults",
		"-no-user-config", "-display", "none", "-serial", "null", "-qmp", "stdio",
		"-kernel", o->kernel, "-initrd", o->initrd, "-append", o->cmdline,
		"-device", "virtio-serial-device", "-chardev", x->chardev,
		"-device", "virtconsole,chardev=agent",
	};
	size_t n = HATCH_ARRAY_SIZE(a);
	memcpy(x->argv, a, sizeof(a));
	if (incoming) {
		x->argv[n++] = "-incoming";
		x->argv[n++] = incoming;
	}
	x->argv[n] = NULL;
	return true;
}

static void lxq_teardown(struct lxq *x)
{
	if (x->lfd >= 0)
		close(x->lfd);
	unlink(x->sock);
	rmdir(x->dir);
}

static void lx_save_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	struct lxq x;
	if (!lxq_setup(o, &x, NULL, q, r))
		return;
	uint64_t t0, tc = 0, tf = 0;
	uint8_t buf[HELLO_MAX];
	size_t len = 0, pos = 0;
	int cfd = -1;
	if (start(x.argv, q, r, &t0)) {
		uint64_t deadline = t0 + bench_timeout_ns(60 * NS_PER_S);
		/* The agent's connection stays open until QEMU quits: the
		 * migrated VM is one whose agent channel was connected. */
		if (wait_hello(q, x.lfd, deadline, buf, &len, &tc, &tf, &cfd) < 0)
			fail(q, r, "save: booting to the agent's hello");
		else if (wait_line(q, "{\"QMP\"", &pos, deadline) < 0 ||
			 send_line(q, "{\"execute\":\"qmp_capabilities\"}\n") < 0 ||
			 wait_line(q, "\"return\"", &pos, deadline) < 0)
			fail(q, r, "save: QMP greeting / capabilities");
		else if (qmp_migrate(q, r, o->snapshot, &pos, deadline)) {
			send_line(q, "{\"execute\":\"quit\"}\n");
			while (q->out >= 0)
				if (pump(q, deadline) == -ETIMEDOUT)
					break;
			finish(q, r, true);
		}
	}
	if (cfd >= 0)
		close(cfd);
	lxq_teardown(&x);
}

/* The frame of VmRequest{id 1, exec{argv ["true"]}} into buf; its length. */
static size_t exec_true_frame(uint8_t *buf, size_t cap)
{
	char *argv[] = { (char *)"true" };
	Hatchery__V1__VmExecRequest x = HATCHERY__V1__VM_EXEC_REQUEST__INIT;
	x.n_argv = 1;
	x.argv = argv;
	Hatchery__V1__VmRequest m = HATCHERY__V1__VM_REQUEST__INIT;
	m.id = 1;
	m.body_case = HATCHERY__V1__VM_REQUEST__BODY_EXEC;
	m.exec = &x;
	size_t n = hatchery__v1__vm_request__get_packed_size(&m);
	if (n + 4 > cap)
		return 0;
	hatchery__v1__vm_request__pack(&m, buf + 4);
	for (int i = 0; i < 4; i++)
		buf[i] = (uint8_t)(n >> (8 * i));
	return n + 4;
}

/* One frame off the front of buf (len bytes): 1 and *m decoded when a
 * whole one is there (*used its size), 0 when more is needed, <0 when
 * the stream is broken. */
static int next_frame(const uint8_t *buf, size_t len, size_t *used, Hatchery__V1__VmReply **m)
{
	if (len < 4)
		return 0;
	uint32_t flen = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
			(uint32_t)buf[3] << 24;
	if (flen > FRAME_MAX - 4)
		return -EMSGSIZE;
	if (len < 4 + flen)
		return 0;
	*m = hatchery__v1__vm_reply__unpack(NULL, flen, buf + 4);
	if (!*m)
		return -EBADMSG;
	*used = 4 + flen;
	return 1;
}

/* Accept QEMU's agent connection on lfd, send req, read frames until the
 * VmReply{id 1} that ends the Exec; QEMU's stdout and stderr drained all
 * along. *connect_ns: when QEMU connected. *step: what failed. */
static int exec_over_chardev(struct qproc *q, int lfd, const uint8_t *req, size_t req_len,
			     uint64_t deadline, uint64_t *connect_ns, const char **step)
{
	_cleanup_free_ uint8_t *buf = malloc(FRAME_MAX);
	if (!buf)
		return -ENOMEM;
	size_t len = 0;
	int cfd = -1, r = 0;
	*step = "waiting for QEMU to connect the agent's chardev";
	for (;;) {
		struct pollfd p[3] = { { .fd = cfd >= 0 ? cfd : lfd, .events = POLLIN },
				       { .fd = q->out, .events = POLLIN },
				       { .fd = q->err, .events = POLLIN } };
		uint64_t now = hatch_now_ns();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		int n = poll(p, 3, (int)((deadline - now) / NS_PER_MS) + 1);
		if (n < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		if (n <= 0)
			continue;
		if (p[1].revents)
			read_into(&q->out, 4096, q->obuf, sizeof(q->obuf), &q->olen);
		if (p[2].revents)
			read_into(&q->err, 1024, q->ebuf, sizeof(q->ebuf), &q->elen);
		if (q->out < 0 && q->err < 0) {
			r = -EPIPE; /* QEMU exited */
			break;
		}
		if (!p[0].revents)
			continue;
		if (cfd < 0) {
			cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (cfd < 0 && errno != EINTR && errno != EAGAIN) {
				r = -errno;
				break;
			}
			if (cfd < 0)
				continue;
			*connect_ns = hatch_now_ns();
			/* Small enough for the socket's buffer: QEMU reads it
			 * once the migrated guest runs and takes it. */
			*step = "sending the Exec request";
			if (write(cfd, req, req_len) != (ssize_t)req_len) {
				r = -errno;
				break;
			}
			*step = "waiting for the Exec's reply";
			continue;
		}
		ssize_t k = read(cfd, buf + len, FRAME_MAX - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -errno : -EPIPE;
			break;
		}
		len += (size_t)k;
		Hatchery__V1__VmReply *m = NULL;
		size_t used = 0;
		int f;
		bool done = false;
		while (!done && (f = next_frame(buf, len, &used, &m)) == 1) {
			if (m->id == 1 && m->body_case != HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT) {
				done = true;
				if (m->body_case != HATCHERY__V1__VM_REPLY__BODY_EXEC || m->error ||
				    m->exec->exit_code != 0 || m->exec->signal != 0) {
					*step = "the Exec's reply (not VmReply{exec} with exit status 0)";
					r = -EPROTO;
				}
			}
			hatchery__v1__vm_reply__free_unpacked(m, NULL);
			memmove(buf, buf + used, len - used);
			len -= used;
		}
		if (done)
			break;
		if (f < 0) {
			*step = "reading the agent's frames";
			r = f;
			break;
		}
	}
	if (cfd >= 0)
		close(cfd);
	return r;
}

static void lx_incoming_once(const struct bench_opts *o, struct qproc *q, struct qrun *r)
{
	char inc[1100];
	snprintf(inc, sizeof(inc), "exec:cat %s", o->snapshot);
	struct lxq x;
	if (!lxq_setup(o, &x, inc, q, r))
		return;
	uint8_t req[256];
	size_t req_len = exec_true_frame(req, sizeof(req));
	uint64_t t0, tc = 0;
	if (start(x.argv, q, r, &t0)) {
		const char *step = NULL;
		int e = exec_over_chardev(q, x.lfd, req, req_len,
					  t0 + bench_timeout_ns(60 * NS_PER_S), &tc, &step);
		if (e < 0) {
			fail(q, r, step);
		} else {
			r->greeting_ns = hatch_now_ns() - t0;
			r->caps_ns = tc - t0;
			finish(q, r, true);
		}
	}
	lxq_teardown(&x);
}

int bench_qemu_linux_incoming(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	char unusable[3000] = "";
	struct stat st = { 0 };
	if (!o->kernel || !o->initrd || !o->cmdline || !o->snapshot) {
		snprintf(unusable, sizeof(unusable),
			 "--kernel, --initrd, --cmdline and --snapshot are needed");
	} else if (access(o->kernel, R_OK) < 0 || access(o->initrd, R_OK) < 0) {
		snprintf(unusable, sizeof(unusable), "the kernel %s or initramfs %s: %s",
			 o->kernel, o->initrd, strerror(errno));
	} else if (o->qemu && access(o->qemu, X_OK) == 0) {
		signal(SIGPIPE, SIG_IGN);
		struct qproc q;
		struct qrun r;
		unlink(o->snapshot);
		lx_save_once(o, &q, &r);
		flatten(q.ebuf);
		if (r.failed)
			snprintf(unusable, sizeof(unusable), "saving the migration file: %s: %s",
				 r.failed, q.ebuf);
		else if (stat(o->snapshot, &st) < 0 || st.st_size == 0)
			snprintf(unusable, sizeof(unusable), "the migration file %s is missing "
				 "or empty: %s", o->snapshot, q.ebuf);
	}
	const struct peer p = {
		.status_name = "qemu.linux.incoming.status",
		.status_label = "qemu-system-x86_64 -M microvm,acpi=on -accel kvm -incoming of the "
				"booted Linux guest, to its first Exec",
		.cmd = LINUX_IN_CMD,
		.kernel = o->kernel,
		.unusable = *unusable ? unusable : NULL,
		.name = "qemu linux incoming",
		.run_name = "qemu linux incoming",
		.run = lx_incoming_once,
	};
	_cleanup_peer_samples_ struct peer_samples ps = { 0 };
	if (run_peer(o, &p, rows, &ps, err) < 0)
		return -1;
	if (!ps.ran)
		return 0;
	char label[200];
	snprintf(label, sizeof(label),
		 "qemu microvm: fork/exec -incoming -> first Exec true's reply (%u MiB, %u vCPU)",
		 o->memory_mib, o->vcpus);
	const struct series ser[] = {
		{ "qemu.linux.incoming", label, &ps.greeting },
		{ "qemu.linux.incoming.connect", "  -> QEMU connected the agent's chardev",
		  &ps.caps },
	};
	const struct series_set set = { NULL, NULL, "us", 1000.0 };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(ser); i++) {
		row_series_begin(rows, &set, &ser[i]);
		if (i == 0) {
			row_num(rows, "failures", ps.failures);
			row_num(rows, "file_st_size", (double)st.st_size);
			row_num(rows, "file_allocated_bytes", (double)st.st_blocks * 512.0);
		}
		row_str(rows, "section", "linux");
		if (o->emulated)
			row_num(rows, "emulated", 1);
		row_end(rows);
	}
	return 0;
}
