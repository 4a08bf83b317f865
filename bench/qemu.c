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
 * In both, the first run is a probe: it shows whether `-accel kvm` works
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
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define STEP_TIMEOUT_NS (20 * NS_PER_S)

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

static int spawn(const char *const *argv, struct qproc *q)
{
	const char *qemu = argv[0];
	int pin[2], pout[2], perr[2];
	if (pipe2(pin, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(pout, O_CLOEXEC) < 0) {
		int e = errno;
		close(pin[0]);
		close(pin[1]);
		return -e;
	}
	if (pipe2(perr, O_CLOEXEC) < 0) {
		int e = errno;
		close(pin[0]);
		close(pin[1]);
		close(pout[0]);
		close(pout[1]);
		return -e;
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* If hatch-bench dies (scripts/bench's trap), so does QEMU. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* dup2 leaves the new fds without O_CLOEXEC: exactly these
		 * three survive the exec. */
		if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
			_exit(127);
		execv(qemu, (char *const *)argv);
		dprintf(2, "exec %s: %s\n", qemu, strerror(errno));
		_exit(127);
	}
	int e = errno;
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	if (pid < 0) {
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		return -e;
	}
	q->pid = pid;
	q->in = pin[1];
	q->out = pout[0];
	q->err = perr[0];
	return 0;
}

/* Read what is there from stdout and stderr, waiting until `deadline`.
 * Returns 0 after some progress, -ETIMEDOUT, or -EPIPE once both are shut. */
static int pump(struct qproc *q, uint64_t deadline)
{
	if (q->out < 0 && q->err < 0)
		return -EPIPE;
	struct pollfd p[2] = { { .fd = q->out, .events = POLLIN },
			       { .fd = q->err, .events = POLLIN } };
	uint64_t now = bench_now_ns();
	if (now >= deadline)
		return -ETIMEDOUT;
	int ms = (int)((deadline - now) / NS_PER_MS) + 1;
	int n = poll(p, 2, ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if (p[0].revents) {
		char tmp[4096];
		ssize_t r = read(q->out, tmp, sizeof(tmp));
		if (r <= 0 && !(r < 0 && errno == EINTR)) {
			close_fd(&q->out);
		} else if (r > 0) {
			size_t room = sizeof(q->obuf) - 1 - q->olen;
			size_t k = (size_t)r < room ? (size_t)r : room;
			memcpy(q->obuf + q->olen, tmp, k);
			q->olen += k;
			q->obuf[q->olen] = '\0';
		}
	}
	if (p[1].revents) {
		char tmp[1024];
		ssize_t r = read(q->err, tmp, sizeof(tmp));
		if (r <= 0 && !(r < 0 && errno == EINTR)) {
			close_fd(&q->err);
		} else if (r > 0) {
			size_t room = sizeof(q->ebuf) - 1 - q->elen;
			size_t k = (size_t)r < room ? (size_t)r : room;
			memcpy(q->ebuf + q->elen, tmp, k);
			q->elen += k;
			q->ebuf[q->elen] = '\0';
		}
	}
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
	uint64_t deadline = bench_now_ns() + 2 * NS_PER_S;
	while (pump(q, deadline) == 0)
		;
	close_fd(&q->out);
	close_fd(&q->err);
	while (waitpid(q->pid, &r->wstatus, 0) < 0 && errno == EINTR)
		;
}

static void run_once(const char *qemu, unsigned memory_mib, struct qproc *q,
		     struct qrun *r)
{
	*r = (struct qrun){ 0 };
	*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
	char mem[16];
	snprintf(mem, sizeof(mem), "%u", memory_mib);
	const char *argv[] = {
		qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults",
		"-no-user-config", "-display", "none", "-S", "-qmp", "stdio",
		"-m", mem, NULL,
	};
	uint64_t t0 = bench_now_ns();
	int e = spawn(argv, q);
	if (e < 0) {
		snprintf(q->ebuf, sizeof(q->ebuf), "fork: %s", strerror(-e));
		r->failed = "fork";
		return;
	}
	size_t pos = 0;
	if (wait_line(q, "{\"QMP\"", &pos, t0 + STEP_TIMEOUT_NS) < 0) {
		r->failed = "waiting for the QMP greeting";
		finish(q, r, true);
		return;
	}
	r->greeting_ns = bench_now_ns() - t0;
	uint64_t t = bench_now_ns();
	if (send_line(q, "{\"execute\":\"qmp_capabilities\"}\n") < 0 ||
	    wait_line(q, "\"return\"", &pos, t + STEP_TIMEOUT_NS) < 0) {
		r->failed = "qmp_capabilities";
		finish(q, r, true);
		return;
	}
	r->caps_ns = bench_now_ns() - t0;
	t = bench_now_ns();
	if (send_line(q, "{\"execute\":\"quit\"}\n") < 0) {
		r->failed = "quit";
		finish(q, r, true);
		return;
	}
	/* Exited = stdout at EOF and reaped. */
	while (q->out >= 0) {
		if (pump(q, t + STEP_TIMEOUT_NS) == -ETIMEDOUT) {
			r->failed = "waiting for exit after quit";
			finish(q, r, true);
			return;
		}
	}
	finish(q, r, false);
	r->exit_ns = bench_now_ns() - t0;
	if (!WIFEXITED(r->wstatus) || WEXITSTATUS(r->wstatus) != 0)
		r->failed = "exit status after quit";
}

/* Trim the trailing newlines (and blanks) off captured stderr. */
static void flatten(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static void status_row(FILE *rows, const struct bench_opts *o, const char *status,
		       const char *error, const char *stderr_text)
{
	row_begin(rows, "qemu.status", "-", "qemu-system-x86_64 -M microvm -accel kvm, paused");
	row_str(rows, "status", status);
	if (o->qemu)
		row_str(rows, "binary", o->qemu);
	if (o->qemu_version)
		row_str(rows, "version", o->qemu_version);
	row_str(rows, "cmd", "-M microvm -accel kvm -nodefaults -no-user-config "
			     "-display none -S -qmp stdio -m 64");
	if (error)
		row_str(rows, "error", error);
	if (stderr_text && *stderr_text) {
		/* Keep line breaks visible once row_str has flattened them. */
		char buf[2048];
		size_t k = 0;
		for (const char *p = stderr_text; *p && k + 4 < sizeof(buf); p++) {
			if (*p == '\n') {
				memcpy(buf + k, " | ", 3);
				k += 3;
			} else {
				buf[k++] = *p;
			}
		}
		buf[k] = '\0';
		row_str(rows, "stderr", buf);
	}
	row_end(rows);
}

int bench_qemu(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	if (!o->qemu || access(o->qemu, X_OK) < 0) {
		status_row(rows, o, "not installed", "qemu: not installed", NULL);
		return 0;
	}
	/* A QEMU that dies before reading our request must not take
	 * hatch-bench with it: writes to its stdin then fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	struct qproc q;
	struct qrun r;
	run_once(o->qemu, o->memory_mib, &q, &r);
	flatten(q.ebuf);
	if (r.failed) {
		char msg[2600];
		if (WIFSIGNALED(r.wstatus))
			snprintf(msg, sizeof(msg), "%s failed (killed by signal %d): %s",
				 r.failed, WTERMSIG(r.wstatus), q.ebuf);
		else
			snprintf(msg, sizeof(msg), "%s failed (exit status %d): %s",
				 r.failed, WEXITSTATUS(r.wstatus), q.ebuf);
		status_row(rows, o, "error", msg, q.ebuf);
		return 0;
	}
	char first_stderr[sizeof(q.ebuf)];
	snprintf(first_stderr, sizeof(first_stderr), "%s", q.ebuf);

	_cleanup_samples_ struct samples greet = { 0 }, caps = { 0 }, ex = { 0 };
	unsigned failures = 0;
	for (unsigned i = 0; i < o->count; i++) {
		run_once(o->qemu, o->memory_mib, &q, &r);
		if (r.failed) {
			flatten(q.ebuf);
			fprintf(stderr, "hatch-bench: qemu run %u: %s: %s\n", i, r.failed, q.ebuf);
			if (++failures > o->count / 4 + 1)
				return hatch_err_set(err, E(INTERNAL), 0, "qemu: %u runs failed",
						     failures);
			continue;
		}
		int e = samples_add(&greet, r.greeting_ns);
		e = e ?: samples_add(&caps, r.caps_ns);
		e = e ?: samples_add(&ex, r.exit_ns);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	status_row(rows, o, "ok", NULL, first_stderr);
	const struct {
		const char *name, *label;
		struct samples *s;
	} series[] = {
		{ "qemu.greeting", "qemu: fork/exec -> QMP greeting", &greet },
		{ "qemu.caps", "  -> qmp_capabilities answered", &caps },
		{ "qemu.exit", "  -> exited after quit", &ex },
	};
	for (size_t k = 0; k < HATCH_ARRAY_SIZE(series); k++) {
		row_begin(rows, series[k].name, "us", series[k].label);
		row_dist(rows, series[k].s, 1000.0);
		if (k == 0)
			row_num(rows, "failures", failures);
		row_end(rows);
	}
	return 0;
}

/* ---- qemuboot: exec -> the tiny guest's first byte ------------------------------ */

#define BOOT_CMD "-M microvm -accel kvm -nodefaults -no-user-config -display none " \
		 "-serial stdio -m 64 -kernel tiny.elf"

static void boot_once(const char *qemu, const char *kernel, unsigned memory_mib,
		      struct qproc *q, struct qrun *r)
{
	*r = (struct qrun){ 0 };
	*q = (struct qproc){ .in = -1, .out = -1, .err = -1 };
	char mem[16];
	snprintf(mem, sizeof(mem), "%u", memory_mib);
	const char *argv[] = {
		qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults",
		"-no-user-config", "-display", "none", "-serial", "stdio",
		"-m", mem, "-kernel", kernel, NULL,
	};
	uint64_t t0 = bench_now_ns();
	int e = spawn(argv, q);
	if (e < 0) {
		snprintf(q->ebuf, sizeof(q->ebuf), "fork: %s", strerror(-e));
		r->failed = "fork";
		return;
	}
	/* The first byte on stdout is the guest's. */
	while (q->olen == 0) {
		int p = pump(q, t0 + STEP_TIMEOUT_NS);
		if (p < 0) {
			r->failed = p == -ETIMEDOUT ? "waiting for the guest's byte (20 s)"
						    : "waiting for the guest's byte (QEMU exited)";
			finish(q, r, true);
			return;
		}
	}
	r->greeting_ns = bench_now_ns() - t0;
	finish(q, r, true);
	if (q->obuf[0] != '!')
		r->failed = "the guest's byte (expected '!')";
}

static void boot_status_row(FILE *rows, const struct bench_opts *o, const char *status,
			    const char *error, const char *stderr_text)
{
	row_begin(rows, "qemu.boot.status", "-",
		  "qemu-system-x86_64 -M microvm -accel kvm booting bench/qemu-guest/tiny.elf");
	row_str(rows, "status", status);
	if (o->qemu)
		row_str(rows, "binary", o->qemu);
	if (o->qemu_version)
		row_str(rows, "version", o->qemu_version);
	if (o->qemu_guest)
		row_str(rows, "kernel", o->qemu_guest);
	row_str(rows, "cmd", BOOT_CMD);
	if (error)
		row_str(rows, "error", error);
	if (stderr_text && *stderr_text) {
		char buf[2048];
		size_t k = 0;
		for (const char *p = stderr_text; *p && k + 4 < sizeof(buf); p++) {
			if (*p == '\n') {
				memcpy(buf + k, " | ", 3);
				k += 3;
			} else {
				buf[k++] = *p;
			}
		}
		buf[k] = '\0';
		row_str(rows, "stderr", buf);
	}
	row_end(rows);
}

int bench_qemu_boot(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	if (!o->qemu || access(o->qemu, X_OK) < 0) {
		boot_status_row(rows, o, "not installed", "qemu: not installed", NULL);
		return 0;
	}
	if (o->qemu_guest_error || !o->qemu_guest || access(o->qemu_guest, R_OK) < 0) {
		char msg[1200];
		if (o->qemu_guest_error)
			snprintf(msg, sizeof(msg), "the tiny guest could not be built: %s",
				 o->qemu_guest_error);
		else if (!o->qemu_guest)
			snprintf(msg, sizeof(msg), "no tiny guest (--qemu-guest)");
		else
			snprintf(msg, sizeof(msg), "the tiny guest %s: %s", o->qemu_guest,
				 strerror(errno));
		boot_status_row(rows, o, "error", msg, NULL);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	struct qproc q;
	struct qrun r;
	boot_once(o->qemu, o->qemu_guest, o->memory_mib, &q, &r);
	flatten(q.ebuf);
	if (r.failed) {
		char msg[2600];
		snprintf(msg, sizeof(msg), "%s failed (%s %d): %s", r.failed,
			 WIFSIGNALED(r.wstatus) ? "killed by signal" : "exit status",
			 WIFSIGNALED(r.wstatus) ? WTERMSIG(r.wstatus) : WEXITSTATUS(r.wstatus),
			 q.ebuf);
		boot_status_row(rows, o, "error", msg, q.ebuf);
		return 0;
	}
	char first_stderr[sizeof(q.ebuf)];
	snprintf(first_stderr, sizeof(first_stderr), "%s", q.ebuf);
	_cleanup_samples_ struct samples boot = { 0 };
	unsigned failures = 0;
	for (unsigned i = 0; i < o->count; i++) {
		boot_once(o->qemu, o->qemu_guest, o->memory_mib, &q, &r);
		if (r.failed) {
			flatten(q.ebuf);
			fprintf(stderr, "hatch-bench: qemu boot %u: %s: %s\n", i, r.failed, q.ebuf);
			if (++failures > o->count / 4 + 1)
				return hatch_err_set(err, E(INTERNAL), 0, "qemu boot: %u runs failed",
						     failures);
			continue;
		}
		int e = samples_add(&boot, r.greeting_ns);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	boot_status_row(rows, o, "ok", NULL, first_stderr);
	row_begin(rows, "qemu.boot", "us",
		  "qemu: fork/exec -> tiny guest's first byte on the serial port");
	row_dist(rows, &boot, 1000.0);
	row_num(rows, "failures", failures);
	row_end(rows);
	return 0;
}
