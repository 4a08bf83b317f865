/* cmd_vm.c - run, snapshot, restore: work done inside a leased VM (a guest
 * call, a Save to a file, a Restore from one), then a clean release. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchctl.h"

/* --- run ------------------------------------------------------------------ */

/* run POOL FUNCTION [PAYLOAD|-] [--deadline MS] [--hex] [--time]: lease a
 * VM of a booted pool, call one guest function, write its result to stdout
 * (raw bytes, or hex) and its log to stderr, release the VM. */
int cmd_run(const struct hx_ctx *cx, int argc, char **argv)
{
	unsigned deadline = 0;
	bool hex = false, timing = false;
	char *args[3];
	int nargs = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--deadline") == 0 && i + 1 < argc) {
			if (hx_parse_ms(argv[++i], &deadline) < 0)
				return hx_usage_error("run: --deadline wants milliseconds in 0..%u, not '%s'",
						      MAX_MS, argv[i]);
		} else if (strcmp(argv[i], "--hex") == 0) {
			hex = true;
		} else if (strcmp(argv[i], "--time") == 0) {
			timing = true;
		} else if (nargs < 3 && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			args[nargs++] = argv[i];
		} else {
			return hx_usage_error("run: unexpected argument '%s'", argv[i]);
		}
	}
	if (nargs < 2)
		return hx_usage_error("run: missing POOL FUNCTION");
	static uint8_t payload[RUN_PAYLOAD_MAX + 1]; /* + 1: to see that stdin is longer */
	size_t len = 0;
	if (nargs == 3 && strcmp(args[2], "-") == 0) {
		while (len < sizeof(payload)) {
			ssize_t n = read(0, payload + len, sizeof(payload) - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				fprintf(stderr, "%s: run: read stdin: %s\n", hx_prog, strerror(errno));
				return HX_FAILED;
			}
			if (n == 0)
				break;
			len += (size_t)n;
		}
		/* Never call with a payload cut short: that is a wrong answer. */
		if (len > RUN_PAYLOAD_MAX)
			return hx_usage_error("run: PAYLOAD on stdin longer than %zu bytes",
					      RUN_PAYLOAD_MAX);
	} else if (nargs == 3) {
		len = strlen(args[2]);
		if (len > RUN_PAYLOAD_MAX)
			return hx_usage_error("run: PAYLOAD longer than %zu bytes", RUN_PAYLOAD_MAX);
		memcpy(payload, args[2], len);
	}

	struct hatch_err err = { 0 };
	/* The VM socket waits at least the call's own deadline. */
	unsigned to = cx->timeout_ms;
	if (to && deadline + 1000 > to)
		to = deadline + 1000;
	Hatchery__V1__AcquireReply *a = NULL;
	uint64_t t_acquire = 0;
	_cleanup_close_ int vm_fd = hx_lease_vm(cx, args[0], DEFAULT_DEADLINE_MS, to,
						&a, &t_acquire, &err);
	bool hit = a && a->hit;
	hatch_free(a);
	if (vm_fd < 0)
		return hx_fail(&err);
	Hatchery__V1__VmCallReply *rep = NULL;
	uint64_t t0 = hatch_now_ns();
	int r = hatch_vm_call(vm_fd, args[1], payload, len, deadline, &rep, &err);
	uint64_t t_call = hatch_now_ns() - t0;
	if (r < 0) {
		hatch_err_wrap(&err, "%s", args[1]);
		return hx_fail(&err);
	}
	if (rep->log.len)
		fprintf(stderr, "%.*s", (int)rep->log.len, (const char *)rep->log.data);
	if (rep->log_dropped)
		fprintf(stderr, "%s: %u log lines dropped\n", hx_prog, rep->log_dropped);
	if (hex) {
		for (size_t i = 0; i < rep->result.len; i++)
			printf("%02x", rep->result.data[i]);
		putchar('\n');
	} else {
		fwrite(rep->result.data, 1, rep->result.len, stdout);
	}
	uint64_t run_ns = rep->run_ns;
	hatch_free(rep);
	t0 = hatch_now_ns();
	hatch_vm_release(steal_fd(&vm_fd), &err);
	uint64_t t_release = hatch_now_ns() - t0;
	/* The result first, then the times: in this order on a terminal. */
	int rc = hx_finish_stdout();
	if (timing)
		fprintf(stderr,
			"%s: acquire %.1f µs (%s), call %.1f µs (guest %.1f µs), release %.1f µs\n",
			hx_prog, hx_ns_to_us(t_acquire), hit ? "hit" : "miss", hx_ns_to_us(t_call),
			hx_ns_to_us(run_ns), hx_ns_to_us(t_release));
	return rc;
}

/* --- snapshot, restore ----------------------------------------------------- */

struct snap_args {
	const char *pool, *file;
	const char *fn, *payload; /* --call; fn NULL without it */
	const char *exec;         /* snapshot --exec: a shell command; NULL without it */
	unsigned deadline;        /* --deadline: the acquire's, ms */
};

/* POOL FILE [--call FUNCTION PAYLOAD | --exec COMMAND], for both
 * commands (--exec: snapshot only, a Linux pool). */
static int parse_snap_args(const char *cmd, int argc, char **argv, struct snap_args *a)
{
	const char *pos[2];
	int npos = 0;
	memset(a, 0, sizeof(*a));
	a->deadline = DEFAULT_DEADLINE_MS;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--deadline") == 0) {
			if (i + 1 >= argc || hx_parse_ms(argv[++i], &a->deadline) < 0)
				return hx_usage_error("%s: --deadline wants milliseconds in 0..%u",
						      cmd, MAX_MS);
		} else if (strcmp(argv[i], "--call") == 0) {
			if (a->fn)
				return hx_usage_error("%s: --call given twice", cmd);
			if (i + 2 >= argc)
				return hx_usage_error("%s: --call wants FUNCTION PAYLOAD", cmd);
			a->fn = argv[++i];
			a->payload = argv[++i];
			if (!*a->fn)
				return hx_usage_error("%s: --call: FUNCTION must not be empty", cmd);
			if (strlen(a->payload) > RUN_PAYLOAD_MAX)
				return hx_usage_error("%s: --call: PAYLOAD longer than %zu bytes",
						      cmd, RUN_PAYLOAD_MAX);
		} else if (strcmp(argv[i], "--exec") == 0 && strcmp(cmd, "snapshot") == 0) {
			if (a->exec)
				return hx_usage_error("%s: --exec given twice", cmd);
			if (i + 1 >= argc || !*argv[i + 1])
				return hx_usage_error("%s: --exec wants a COMMAND", cmd);
			a->exec = argv[++i];
		} else if (npos < 2 && argv[i][0] != '-') {
			pos[npos++] = argv[i];
		} else {
			return hx_usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
		}
	}
	if (npos < 2)
		return hx_usage_error("%s: missing POOL FILE", cmd);
	if (a->fn && a->exec)
		return hx_usage_error("%s: --call (a kernel-less pool) or --exec (a Linux "
				      "pool), not both", cmd);
	if (!*pos[0] || !*pos[1])
		return hx_usage_error("%s: POOL and FILE must not be empty", cmd);
	a->pool = pos[0];
	a->file = pos[1];
	return HX_OK;
}

/* --call: the result as (at most 64 bytes of) hex, the log on stderr. */
static int snap_call(int vm_fd, const struct snap_args *sa, struct hatch_err *err)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	uint64_t t0 = hatch_now_ns();
	if (hatch_vm_call(vm_fd, sa->fn, sa->payload, strlen(sa->payload), 0, &rep, err) < 0)
		return hatch_err_wrap(err, "%s", sa->fn);
	uint64_t t = hatch_now_ns() - t0;
	if (rep->log.len)
		fprintf(stderr, "%.*s", (int)rep->log.len, (const char *)rep->log.data);
	printf("call %s: %zu bytes in %.1f µs (guest %.1f µs): ", sa->fn, rep->result.len,
	       hx_ns_to_us(t), hx_ns_to_us(rep->run_ns));
	for (size_t i = 0; i < rep->result.len && i < 64; i++)
		printf("%02x", rep->result.data[i]);
	printf("%s\n", rep->result.len > 64 ? "..." : "");
	hatch_free(rep);
	return 0;
}

static void snap_exec_output(void *ctx, int stream, const void *data, size_t len)
{
	(void)ctx;
	fwrite(data, 1, len, stream == HATCH_STDERR ? stderr : stdout);
}

/* --exec: the warm-up runs as `sh -c COMMAND` in the guest, its output
 * passed through; it must exit 0, or nothing is saved. */
static int snap_exec(int vm_fd, const struct snap_args *sa, struct hatch_err *err)
{
	const char *argv[] = { "/bin/sh", "-c", sa->exec };
	struct hatch_exec req = { .argv = argv, .argc = 3 };
	Hatchery__V1__VmExecReply *rep = NULL;
	uint64_t t0 = hatch_now_ns();
	if (hatch_vm_exec(vm_fd, &req, snap_exec_output, NULL, &rep, err) < 0)
		return hatch_err_wrap(err, "--exec");
	fflush(stdout);
	int code = rep->exit_code, sig = rep->signal;
	bool to = rep->timed_out;
	hatch_free(rep);
	if (sig || code || to)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "--exec: the warm-up %s %d%s; nothing saved",
				     sig ? "was killed by signal" : "exited with", sig ? sig : code,
				     to ? " (timed out)" : "");
	fprintf(stderr, "exec: %.1f ms\n", (double)(hatch_now_ns() - t0) / 1e6);
	return 0;
}

/* snapshot POOL FILE [--call FUNCTION PAYLOAD | --exec COMMAND] */
int cmd_snapshot(const struct hx_ctx *cx, int argc, char **argv)
{
	struct snap_args sa;
	int r = parse_snap_args("snapshot", argc, argv, &sa);
	if (r != HX_OK)
		return r;
	struct hatch_err err = { 0 };
	/* Opened before the lease: a bad path costs no VM. 0600, and fchmod
	 * for a file that existed: the snapshot is the guest's whole memory. */
	_cleanup_close_ int file = open(sa.file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file < 0 || fchmod(file, 0600) < 0) {
		hatch_err_set(&err, E(INVALID_ARGUMENT), errno, "snapshot: open %s", sa.file);
		return hx_fail(&err);
	}
	Hatchery__V1__AcquireReply *a = NULL;
	/* The warm-up runs as long as an Exec may (60 s, then the agent's
	 * grace): the VM socket waits that long at least. */
	unsigned to = cx->timeout_ms;
	if (sa.exec && to && to < 75000)
		to = 75000;
	_cleanup_close_ int vm_fd = hx_lease_vm(cx, sa.pool, sa.deadline, to, &a, NULL, &err);
	hatch_free(a);
	if (vm_fd < 0)
		return hx_fail(&err);
	if (sa.fn && snap_call(vm_fd, &sa, &err) < 0)
		return hx_fail(&err);
	if (sa.exec && snap_exec(vm_fd, &sa, &err) < 0)
		return hx_fail(&err);
	Hatchery__V1__VmSaveReply *sr = NULL;
	uint64_t t0 = hatch_now_ns();
	if (hatch_vm_save(vm_fd, file, &sr, &err) < 0) {
		hatch_err_wrap(&err, "save to %s", sa.file);
		return hx_fail(&err);
	}
	uint64_t t = hatch_now_ns() - t0;
	struct stat st;
	if (fstat(file, &st) < 0) {
		hatch_free(sr);
		hatch_err_set(&err, E(INTERNAL), errno, "snapshot: stat %s", sa.file);
		return hx_fail(&err);
	}
	printf("saved %s: %lld bytes (%llu reported)\n"
	       "save %.1f µs: vcpu state %.1f µs, vm state %.1f µs, memory write %.1f µs\n",
	       sa.file, (long long)st.st_size, (unsigned long long)sr->bytes_written,
	       hx_ns_to_us(t), hx_ns_to_us(sr->vcpu_state_ns), hx_ns_to_us(sr->vm_state_ns),
	       hx_ns_to_us(sr->memory_write_ns));
	hatch_free(sr);
	if (hatch_vm_release(steal_fd(&vm_fd), &err) < 0)
		return hx_fail(&err);
	return hx_finish_stdout();
}

/* restore POOL FILE [--call FUNCTION PAYLOAD] */
int cmd_restore(const struct hx_ctx *cx, int argc, char **argv)
{
	struct snap_args sa;
	int r = parse_snap_args("restore", argc, argv, &sa);
	if (r != HX_OK)
		return r;
	struct hatch_err err = { 0 };
	_cleanup_close_ int file = open(sa.file, O_RDONLY | O_CLOEXEC);
	if (file < 0) {
		hatch_err_set(&err, E(INVALID_ARGUMENT), errno, "restore: open %s", sa.file);
		return hx_fail(&err);
	}
	Hatchery__V1__AcquireReply *a = NULL;
	_cleanup_close_ int vm_fd = hx_lease_vm(cx, sa.pool, sa.deadline,
						cx->timeout_ms, &a, NULL, &err);
	hatch_free(a);
	if (vm_fd < 0)
		return hx_fail(&err);
	Hatchery__V1__VmRestoreReply *rr = NULL;
	uint64_t t0 = hatch_now_ns();
	if (hatch_vm_restore(vm_fd, file, &rr, &err) < 0) {
		hatch_err_wrap(&err, "restore %s", sa.file);
		return hx_fail(&err);
	}
	uint64_t t = hatch_now_ns() - t0;
	printf("restored %s: %zu functions\n"
	       "restore %.1f µs: map %.1f µs, vm state %.1f µs, vcpu state %.1f µs\n",
	       sa.file, rr->n_functions, hx_ns_to_us(t), hx_ns_to_us(rr->map_ns),
	       hx_ns_to_us(rr->vm_state_ns), hx_ns_to_us(rr->vcpu_state_ns));
	hatch_free(rr);
	if (sa.fn && snap_call(vm_fd, &sa, &err) < 0)
		return hx_fail(&err);
	if (hatch_vm_release(steal_fd(&vm_fd), &err) < 0)
		return hx_fail(&err);
	return hx_finish_stdout();
}
