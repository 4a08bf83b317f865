/* cmd_exec.c - exec POOL [OPTIONS] [--] ARGV...: lease one Linux VM, put
 * files into it, run one program with its output streamed to ours as it
 * comes, fetch files back, release the VM, and exit with the program's
 * status (exec_status.c). hatchctl's own failures are 125, never 1..5:
 * those belong to the program here. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/ipc.h"
#include "hatchctl.h"

/* vm.proto: timeout_ms 0 means 60 s. */
#define EXEC_DEFAULT_TIMEOUT_MS 60000u
/* How much longer than the program's timeout the VM socket waits for the
 * Exec's next packet: the agent's kill and the reply's way out. */
#define EXEC_SOCKET_SLACK_MS 5000u

/* The agent's environment when none is given (vm.proto, VmExecRequest.env).
 * --env adds to these rather than replacing them: a program that cannot
 * find `ls` because the caller set LANG is a trap. */
static const char *const default_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TERM=dumb",
};

struct xfer {
	const char *local, *remote;
};

struct exec_args {
	const char *pool;
	unsigned deadline_ms;
	unsigned timeout_ms;
	uint64_t output_limit;
	uint32_t uid, gid;
	const char *cwd, *stdin_path;
	const char **env; /* --env values */
	size_t nenv;
	struct xfer *puts, *gets;
	size_t nput, nget;
	bool timing;
	char **argv; /* the program's: points into our argv */
	int argc;
};

/* "--name VALUE" or "--name=VALUE" at argv[*i]: 1 with *val set (and *i
 * past the value), 0 when argv[*i] is another option, -1 when the value
 * is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

static int parse_user(const char *s, uint32_t *uid, uint32_t *gid)
{
	char *end;
	errno = 0;
	unsigned long u = strtoul(s, &end, 10);
	if (errno || end == s || *s == '-' || u > UINT32_MAX)
		return -1;
	unsigned long g = u;
	if (*end == ':') {
		const char *gs = end + 1;
		g = strtoul(gs, &end, 10);
		if (errno || end == gs || *gs == '-' || g > UINT32_MAX)
			return -1;
	}
	if (*end)
		return -1;
	*uid = (uint32_t)u;
	*gid = (uint32_t)g;
	return 0;
}

/* LOCAL:REMOTE (--put, split at the last ':') or REMOTE:LOCAL (--get, at
 * the first): the guest path is absolute and has no ':'. */
static int parse_xfer(const char *opt, char *s, bool put, struct xfer *x)
{
	char *c = put ? strrchr(s, ':') : strchr(s, ':');
	if (!c || c == s || !c[1])
		return hx_usage_error("exec: %s wants %s, not '%s'", opt,
				      put ? "LOCAL:REMOTE" : "REMOTE:LOCAL", s);
	*c = '\0';
	x->local = put ? s : c + 1;
	x->remote = put ? c + 1 : s;
	if (x->remote[0] != '/')
		return hx_usage_error("exec: %s: the guest path '%s' must be absolute", opt,
				      x->remote);
	return HX_OK;
}

static int parse_exec(int argc, char **argv, struct exec_args *ea)
{
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		int r;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			if (ea->pool)
				break; /* the program's name: the rest is its */
			ea->pool = a;
			continue;
		}
#define OPT(name) ((r = opt_value(argc, argv, &i, name, &v)) != 0)
		if (OPT("--timeout")) {
			if (r < 0 || hx_parse_ms(v, &ea->timeout_ms) < 0)
				return hx_usage_error("exec: --timeout wants milliseconds in 0..%u",
						      MAX_MS);
		} else if (OPT("--deadline")) {
			if (r < 0 || hx_parse_ms(v, &ea->deadline_ms) < 0)
				return hx_usage_error("exec: --deadline wants milliseconds in 0..%u",
						      MAX_MS);
		} else if (OPT("--env")) {
			if (r < 0 || !strchr(v, '=') || v[0] == '=')
				return hx_usage_error("exec: --env wants NAME=VALUE");
			ea->env[ea->nenv++] = v;
		} else if (OPT("--cwd")) {
			if (r < 0 || v[0] != '/')
				return hx_usage_error("exec: --cwd wants an absolute guest path");
			ea->cwd = v;
		} else if (OPT("--stdin")) {
			if (r < 0 || !*v)
				return hx_usage_error("exec: --stdin wants FILE or -");
			ea->stdin_path = v;
		} else if (OPT("--output-limit")) {
			if (r < 0 || hx_parse_bytes(v, &ea->output_limit) < 0)
				return hx_usage_error("exec: --output-limit wants a byte count (K, M, G suffixes)");
		} else if (OPT("--user")) {
			if (r < 0 || parse_user(v, &ea->uid, &ea->gid) < 0)
				return hx_usage_error("exec: --user wants UID[:GID]");
		} else if (OPT("--put") || OPT("--get")) {
			bool put = strncmp(a, "--put", 5) == 0;
			if (r < 0)
				return hx_usage_error("exec: %s wants an argument", put ? "--put" : "--get");
			struct xfer *x = put ? &ea->puts[ea->nput++] : &ea->gets[ea->nget++];
			r = parse_xfer(put ? "--put" : "--get", (char *)v, put, x);
			if (r != HX_OK)
				return r;
		} else if (strcmp(a, "--time") == 0) {
			ea->timing = true;
		} else {
			return hx_usage_error("exec: unknown option '%s'", a);
		}
#undef OPT
	}
	if (!ea->pool)
		return hx_usage_error("exec: missing POOL");
	/* Our stdin can be read once: by one of them. */
	int dash = ea->stdin_path && strcmp(ea->stdin_path, "-") == 0;
	for (size_t k = 0; k < ea->nput; k++)
		dash += strcmp(ea->puts[k].local, "-") == 0;
	if (dash > 1)
		return hx_usage_error("exec: stdin (-) given to more than one of --stdin and --put");
	if (i >= argc)
		return hx_usage_error("exec: missing the program to run (POOL [OPTIONS] -- ARGV...)");
	ea->argv = argv + i;
	ea->argc = argc - i;
	return HX_OK;
}

/* --env on top of the defaults; a NAME given replaces the default's. */
static size_t build_env(const struct exec_args *ea, const char **out)
{
	size_t n = 0;
	for (size_t d = 0; d < HATCH_ARRAY_SIZE(default_env); d++) {
		size_t klen = (size_t)(strchr(default_env[d], '=') - default_env[d]) + 1;
		bool overridden = false;
		for (size_t u = 0; u < ea->nenv; u++)
			overridden |= strncmp(ea->env[u], default_env[d], klen) == 0;
		if (!overridden)
			out[n++] = default_env[d];
	}
	for (size_t u = 0; u < ea->nenv; u++)
		out[n++] = ea->env[u];
	return n;
}

/* The program's whole stdin, which travels in the Exec packet. */
static int read_stdin_file(const char *path, uint8_t *buf, size_t cap, size_t *len,
			   struct hatch_err *err)
{
	bool dash = strcmp(path, "-") == 0;
	_cleanup_close_ int fd = dash ? fcntl(0, F_DUPFD_CLOEXEC, 0)
				      : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), errno, "--stdin: open %s", path);
	size_t n = 0;
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return hatch_err_set(err, E(INTERNAL), errno, "--stdin: read %s", path);
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n == cap) /* cap is one past what a packet could ever hold */
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "--stdin: %s is larger than one %d-byte packet; use --put and a redirection",
				     path, IPC_MAX_MSG);
	*len = n;
	return 0;
}

/* Where the program's output goes: our own fd 1 and 2, unbuffered, so the
 * two interleave as the program wrote them. A failed write (a full disk)
 * stops that stream; the Exec runs on and the failure is reported after.
 * A closed pipe kills us with SIGPIPE, like any filter. */
struct out_ctx {
	int failed_errno[2];
};

static void on_output(void *ctx, int stream, const void *data, size_t len)
{
	struct out_ctx *o = ctx;
	int i = stream == HATCH_STDERR;
	const uint8_t *p = data;
	while (len && !o->failed_errno[i]) {
		ssize_t w = write(1 + i, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			o->failed_errno[i] = errno;
			break;
		}
		p += w;
		len -= (size_t)w;
	}
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

struct exec_times {
	uint64_t acquire, put, exec, get, release, guest;
	uint64_t put_bytes, get_bytes;
	bool hit;
};

static void print_times(const struct exec_times *t)
{
	fprintf(stderr,
		"%s: acquire %.1f ms (%s), put %.1f ms (%llu bytes), exec %.1f ms (program %.1f ms), get %.1f ms (%llu bytes), release %.1f ms\n",
		hx_prog, ms(t->acquire), t->hit ? "hit" : "miss", ms(t->put),
		(unsigned long long)t->put_bytes, ms(t->exec), ms(t->guest), ms(t->get),
		(unsigned long long)t->get_bytes, ms(t->release));
}

/* Report a failure of hatchctl's (or the daemon's, or the VM's) outside
 * the Exec itself -- the lease, a --put, a --get: the message as
 * everywhere, and 125 (an ENOENT here is not "program not found"). */
static int exec_fail(struct hatch_err *err)
{
	hx_fail(err);
	return HX_EXEC_FAILED;
}

/* Warnings about what the status does not say. */
static void report_outcome(const struct exec_args *ea, const Hatchery__V1__VmExecReply *rep)
{
	if (rep->timed_out)
		fprintf(stderr, "%s: exec: %s ran past its timeout (%u ms) and was killed\n",
			hx_prog, ea->argv[0],
			ea->timeout_ms ? ea->timeout_ms : EXEC_DEFAULT_TIMEOUT_MS);
	if (rep->stdout_truncated)
		fprintf(stderr, "%s: exec: stdout cut at the output limit (%llu of %llu bytes shown)\n",
			hx_prog, (unsigned long long)(ea->output_limit ? ea->output_limit : 16u << 20),
			(unsigned long long)rep->stdout_bytes);
	if (rep->stderr_truncated)
		fprintf(stderr, "%s: exec: stderr cut at the output limit (%llu of %llu bytes shown)\n",
			hx_prog, (unsigned long long)(ea->output_limit ? ea->output_limit : 16u << 20),
			(unsigned long long)rep->stderr_bytes);
}

static int run_exec(const struct hx_ctx *cx, struct exec_args *ea, struct hatch_exec *x)
{
	struct hatch_err err = { 0 };
	struct exec_times tm = { 0 };
	Hatchery__V1__AcquireReply *a = NULL;
	_cleanup_close_ int vm_fd = hx_lease_vm(cx, ea->pool, ea->deadline_ms, cx->timeout_ms,
						&a, &tm.acquire, &err);
	tm.hit = a && a->hit;
	hatch_free(a);
	if (vm_fd < 0)
		return exec_fail(&err);

	uint64_t t0 = hatch_now_ns();
	for (size_t i = 0; i < ea->nput; i++) {
		uint64_t n = 0;
		if (hx_upload(vm_fd, ea->puts[i].local, ea->puts[i].remote, &n, &err) < 0)
			return exec_fail(&err);
		tm.put_bytes += n;
	}
	tm.put = hatch_now_ns() - t0;

	/* -t bounds each packet's wait; the program may be silent for its
	 * whole timeout, so the socket waits that long and a little more. */
	if (cx->timeout_ms) {
		unsigned prog = ea->timeout_ms ? ea->timeout_ms : EXEC_DEFAULT_TIMEOUT_MS;
		unsigned to = prog + EXEC_SOCKET_SLACK_MS;
		if (hx_vm_set_timeout(vm_fd, to > cx->timeout_ms ? to : cx->timeout_ms, &err) < 0)
			return exec_fail(&err);
	}
	struct out_ctx out = { { 0, 0 } };
	Hatchery__V1__VmExecReply *rep = NULL;
	t0 = hatch_now_ns();
	int r = hatch_vm_exec(vm_fd, x, on_output, &out, &rep, &err);
	tm.exec = hatch_now_ns() - t0;
	if (r < 0) {
		hatch_err_wrap(&err, "exec %s", ea->argv[0]);
		hx_fail(&err);
		return hx_exec_fail_status(&err); /* 126/127: could not start */
	}
	int status = hx_exec_status(rep);
	tm.guest = rep->duration_ns;
	report_outcome(ea, rep);
	hatch_free(rep);
	if (hx_vm_set_timeout(vm_fd, cx->timeout_ms, &err) < 0)
		return exec_fail(&err);

	/* Fetched whatever the status: a failed build's log is what one wants. */
	t0 = hatch_now_ns();
	for (size_t i = 0; i < ea->nget; i++) {
		uint64_t n = 0;
		if (hx_download(vm_fd, ea->gets[i].remote, ea->gets[i].local, 0, &n, &err) < 0) {
			hatch_err_wrap(&err, "after the program exited with status %d", status);
			return exec_fail(&err);
		}
		tm.get_bytes += n;
	}
	tm.get = hatch_now_ns() - t0;

	t0 = hatch_now_ns();
	hatch_vm_release(steal_fd(&vm_fd), &err); /* the program's outcome stands */
	tm.release = hatch_now_ns() - t0;
	if (ea->timing)
		print_times(&tm);
	for (int i = 0; i < 2; i++)
		if (out.failed_errno[i]) {
			fprintf(stderr, "%s: exec: writing the program's %s: %s\n", hx_prog,
				i ? "stderr" : "stdout", strerror(out.failed_errno[i]));
			return HX_EXEC_FAILED;
		}
	return status;
}

int cmd_exec(const struct hx_ctx *cx, int argc, char **argv)
{
	/* Every option takes at most one argv slot of its own: argc bounds
	 * how many of each there can be. */
	_cleanup_free_ const char **env = calloc((size_t)argc + HATCH_ARRAY_SIZE(default_env),
						 sizeof(*env));
	_cleanup_free_ const char **user_env = calloc((size_t)argc, sizeof(*user_env));
	_cleanup_free_ struct xfer *puts = calloc((size_t)argc, sizeof(*puts));
	_cleanup_free_ struct xfer *gets = calloc((size_t)argc, sizeof(*gets));
	if (!env || !user_env || !puts || !gets) {
		fprintf(stderr, "%s: exec: out of memory\n", hx_prog);
		return HX_EXEC_FAILED;
	}
	struct exec_args ea = { .deadline_ms = LINUX_DEADLINE_MS, .env = user_env,
				.puts = puts, .gets = gets };
	/* A usage error is 125 too: 2 could be the program's own. */
	if (parse_exec(argc, argv, &ea) != HX_OK)
		return HX_EXEC_FAILED;

	struct hatch_err err = { 0 };
	/* stdin is read before the lease: a bad path costs no VM. */
	_cleanup_free_ uint8_t *in = NULL;
	size_t in_len = 0;
	if (ea.stdin_path) {
		in = malloc(IPC_MAX_MSG + 1);
		if (!in || read_stdin_file(ea.stdin_path, in, IPC_MAX_MSG + 1, &in_len, &err) < 0) {
			if (!in)
				hatch_err_set(&err, E(INTERNAL), ENOMEM, "--stdin");
			return exec_fail(&err);
		}
	}
	struct hatch_exec x = {
		.argv = (const char *const *)ea.argv,
		.argc = (size_t)ea.argc,
		.env = env,
		.envc = ea.nenv ? build_env(&ea, env) : 0,
		.cwd = ea.cwd,
		.stdin_data = in,
		.stdin_len = in_len,
		.timeout_ms = ea.timeout_ms,
		.output_limit = ea.output_limit,
		.uid = ea.uid,
		.gid = ea.gid,
	};
	return run_exec(cx, &ea, &x);
}
