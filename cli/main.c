/* main.c - hatchctl: global options, dispatch to a command, usage, and the
 * exit statuses (hx_fail() is the one place a hatch_err becomes one).
 * What the other files hold: hatchctl.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hatchery/cleanup.h"
#include "hatchctl.h"

/* getopt prints argv[0] in its messages; give it a stable name. */
char hx_prog[] = "hatchctl";

static void usage(FILE *f)
{
	fprintf(f,
"Usage: hatchctl [-s SOCKET] [-t TIMEOUT_MS] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  status [--json]     pools (idle/leased/spawning/waiting, min_idle/max,\n"
"                      degraded, last error) and every child (id, pid,\n"
"                      state, age)\n"
"  stats [--json|--prometheus]\n"
"                      per-pool counters (retirements too) and acquire /\n"
"                      spawn-to-ready latency (count, p50, p90, p99, max);\n"
"                      --prometheus: these and status's gauges in\n"
"                      Prometheus's text format (latencies as histograms),\n"
"                      for a textfile collector\n"
"  reload [--json]     hatcheryd re-reads its configuration file (as on\n"
"                      SIGHUP; root or hatcheryd's own uid): pools added,\n"
"                      removed, rebuilt; leased VMs are not touched. A file\n"
"                      that does not load is refused with its error (exit\n"
"                      1) and the running configuration stays\n"
"  ping [--json]       ping hatcheryd: version, pid, round-trip time\n"
"  acquire POOL [--deadline MS] [--json]\n"
"                      lease a VM of POOL (waiting up to MS for one, default\n"
"                      %u), ping it, read its info, release it, and show\n"
"                      what came back and how long each step took\n"
"  run POOL FUNCTION [PAYLOAD|-] [--deadline MS] [--hex] [--time]\n"
"                      lease a VM of a booted POOL, call FUNCTION in its\n"
"                      guest with PAYLOAD (- reads stdin, at most %zu\n"
"                      bytes), write the result to stdout and the guest's\n"
"                      log to stderr, release the VM. The result is written\n"
"                      as it is (raw bytes); --hex writes it as lowercase\n"
"                      hex and a newline instead. --time adds a line on\n"
"                      stderr: acquire, call (and the guest's run time\n"
"                      within it), release, in µs. A guest fault or a\n"
"                      missed deadline is an error reply (exit 1)\n"
"  snapshot POOL FILE [--call FUNCTION PAYLOAD | --exec COMMAND] [--deadline MS]\n"
"                      lease a VM of a booted or linux POOL, optionally warm\n"
"                      it first: call FUNCTION (kernel-less) or run COMMAND\n"
"                      with /bin/sh -c (Linux; it must exit 0), then save it\n"
"                      to FILE (created or truncated, mode 0600), print the\n"
"                      save's phases and the file's size, release the VM.\n"
"                      A pool with kind = restore, snapshot = FILE serves it.\n"
"                      --deadline: how long the acquire may wait (1000)\n"
"  restore POOL FILE [--call FUNCTION PAYLOAD] [--deadline MS]\n"
"                      lease a VM of an empty POOL, restore FILE into it,\n"
"                      print the restore's phases, optionally call FUNCTION,\n"
"                      release the VM. A call's result is printed as hex\n"
"                      (at most 64 bytes shown), its log goes to stderr\n"
"\n"
"Linux pools (pool kind linux: a Debian kernel and hatchery's agent):\n"
"  exec POOL [OPTIONS] [--] PROGRAM [ARGS...]\n"
"                      lease a VM, upload the --put files, run PROGRAM with\n"
"                      its stdout/stderr streamed to ours as it comes,\n"
"                      download the --get files, release the VM, and exit\n"
"                      with PROGRAM's status. Options:\n"
"        --timeout MS          kill the program after MS (default 60000)\n"
"        --env NAME=VALUE      add to PATH, HOME=/root, TERM=dumb (repeatable)\n"
"        --cwd DIR             working directory in the guest (default /)\n"
"        --stdin FILE|-        the program's stdin (at most ~64 KiB; else\n"
"                              it reads EOF)\n"
"        --output-limit BYTES  per stream (default 16M; K/M/G suffixes)\n"
"        --user UID[:GID]      run as (default 0:0, root in the guest)\n"
"        --put LOCAL:REMOTE    upload before (repeatable; LOCAL - is stdin)\n"
"        --get REMOTE:LOCAL    download after, whatever the status\n"
"                              (repeatable; LOCAL - is stdout)\n"
"        --deadline MS         wait for a VM (default %u; also for\n"
"                              cp, ls, stat, console)\n"
"        --time                acquire/put/exec/get/release ms on stderr\n"
"                      Exit status: PROGRAM's; 128+N if it died of signal N;\n"
"                      124 timed out; 125 hatchctl failed (usage errors too);\n"
"                      126 PROGRAM could not be started; 127 not found\n"
"  cp SRC DST [--max-size BYTES] [--deadline MS]\n"
"                      copy a file into or out of a fresh VM: one of SRC\n"
"                      and DST is POOL:/PATH, the other a local path or -.\n"
"                      The VM is discarded afterwards (use exec --put/--get\n"
"                      for several steps in one VM). Downloads: at most\n"
"                      --max-size (default 64M)\n"
"  ls POOL PATH [--json]   a guest directory, as ls -l (times in UTC)\n"
"  stat POOL PATH [--json] lstat(2) of a guest path\n"
"  console POOL        a fresh VM's kernel release and the tail of its\n"
"                      serial console\n"
"\n"
"  help                this text\n"
"\n"
"Options:\n"
"  -s, --socket SOCKET      hatcheryd's socket (default: $HATCHERY_SOCKET,\n"
"                           else " HATCH_DEFAULT_SOCKET ")\n"
"  -t, --timeout TIMEOUT_MS fail a call with no reply after this long\n"
"                           (default %u; 0 waits forever)\n"
"  -h, --help               this text\n"
"\n"
"Text output is for people. With --json, stdout is one JSON object; times\n"
"in it are integer nanoseconds.\n"
"\n"
"Exit status (exec: see above):\n"
"  0  success\n"
"  1  the request failed: an error reply from the server (or a local error)\n"
"  2  usage error\n"
"  3  hatcheryd unavailable: cannot connect, no reply in time, or shutting\n"
"     down\n"
"  4  POOL_EXHAUSTED: no VM became ready before the deadline; retry later\n"
"  5  PERMISSION_DENIED\n"
"Errors are printed to stderr as \"hatchctl: CODE_NAME: message\".\n",
		DEFAULT_DEADLINE_MS, RUN_PAYLOAD_MAX, LINUX_DEADLINE_MS, DEFAULT_TIMEOUT_MS);
}

int hx_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", hx_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'hatchctl help'.\n");
	return HX_USAGE;
}

/* The one place a hatch_err becomes a message and an exit status. */
int hx_fail(const struct hatch_err *err)
{
	fprintf(stderr, "%s: %s: %s\n", hx_prog, hatch_err_code_name(err->code),
		err->msg[0] ? err->msg : "(no message)");
	switch (err->code) {
	case E(UNAVAILABLE):
		return HX_UNAVAILABLE;
	case E(POOL_EXHAUSTED):
		return HX_EXHAUSTED;
	case E(PERMISSION_DENIED):
		return HX_DENIED;
	default:
		return HX_FAILED;
	}
}

/* Everything went to stdout through stdio; a full disk or closed pipe only
 * shows up here. */
int hx_finish_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: write to stdout: %s\n", hx_prog, strerror(errno));
		return HX_FAILED;
	}
	return HX_OK;
}

/* Parse a decimal count of milliseconds in [0, MAX_MS]. */
int hx_parse_ms(const char *s, unsigned *out)
{
	if (!s || *s < '0' || *s > '9') /* strtoul accepts " -1" */
		return -1;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > MAX_MS)
		return -1;
	*out = (unsigned)v;
	return 0;
}


double hx_ns_to_us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* --- per-command option parsing ------------------------------------------ */

/* A second getopt pass, over the command's own arguments. */
int hx_parse_cmd(int argc, char **argv, const struct option *long_opts,
		 int nargs_want, const char *args_name, struct hx_opts *o)
{
	/* getopt prefixes its own messages with argv[0]; static, because the
	 * pointer stays behind in argv. */
	const char *cmd = argv[0];
	static char name[64];
	snprintf(name, sizeof(name), "%s %s", hx_prog, cmd);
	argv[0] = name;

	optind = 0; /* glibc: reinitialise for a new argument vector */
	int c;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_PROMETHEUS:
			o->prometheus = true;
			break;
		case OPT_DEADLINE:
			if (hx_parse_ms(optarg, &o->deadline_ms) < 0)
				return hx_usage_error("%s: --deadline wants milliseconds in 0..%u, not '%s'",
						      cmd, MAX_MS, optarg);
			break;
		default: /* getopt has said what was wrong */
			fprintf(stderr, "Try 'hatchctl help'.\n");
			return HX_USAGE;
		}
	}
	int left = argc - optind;
	if (left != nargs_want) {
		if (left < nargs_want)
			return hx_usage_error("%s: missing %s", cmd, args_name);
		return hx_usage_error("%s: unexpected argument '%s'",
				      cmd, argv[optind + nargs_want]);
	}
	for (int i = 0; i < left && i < (int)HATCH_ARRAY_SIZE(o->args); i++)
		o->args[o->nargs++] = argv[optind + i];
	return HX_OK;
}

/* --- main ----------------------------------------------------------------- */

static int cmd_help(const struct hx_ctx *cx, int argc, char **argv)
{
	if (argc > 1)
		return hx_usage_error("help: unexpected argument '%s'", argv[1]);
	usage(stdout);
	return hx_finish_stdout();
}

static const struct command {
	const char *name;
	int (*run)(const struct hx_ctx *cx, int argc, char **argv);
} commands[] = {
	{ "status", cmd_status },
	{ "stats", cmd_stats },
	{ "reload", cmd_reload },
	{ "ping", cmd_ping },
	{ "acquire", cmd_acquire },
	{ "run", cmd_run },
	{ "snapshot", cmd_snapshot },
	{ "restore", cmd_restore },
	{ "exec", cmd_exec },
	{ "cp", cmd_cp },
	{ "ls", cmd_ls },
	{ "stat", cmd_stat },
	{ "console", cmd_console },
	{ "help", cmd_help },
};

int main(int argc, char **argv)
{
	static const struct option global_opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct hx_ctx cx = { .timeout_ms = DEFAULT_TIMEOUT_MS };

	if (argc < 1)
		return HX_USAGE;
	argv[0] = hx_prog;
	int c;
	/* "+": stop at the command; what follows is the command's. */
	while ((c = getopt_long(argc, argv, "+s:t:h", global_opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!*optarg)
				return hx_usage_error("-s: empty socket path");
			cx.socket = optarg;
			break;
		case 't':
			if (hx_parse_ms(optarg, &cx.timeout_ms) < 0)
				return hx_usage_error("-t wants milliseconds in 0..%u, not '%s'",
						      MAX_MS, optarg);
			break;
		case 'h':
			usage(stdout);
			return hx_finish_stdout();
		default: /* getopt has said what was wrong */
			fprintf(stderr, "Try 'hatchctl help'.\n");
			return HX_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no command given\n\n", hx_prog);
		usage(stderr);
		return HX_USAGE;
	}

	const char *name = argv[optind];
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(commands); i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].run(&cx, argc - optind, argv + optind);
	return hx_usage_error("unknown command '%s'", name);
}
