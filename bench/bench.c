/* bench.c - hatch-bench: arguments, dispatch, and the client helpers every
 * phase shares. See bench.h for how the phases and the report fit together;
 * scripts/bench is the usual way to run them. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hatchery/clock.h"
#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* A reply from a loaded daemon (hundreds of children spawning) can take a
 * while, but never this long. */
#define REPLY_TIMEOUT_MS 5000u


void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / NS_PER_S),
			       .tv_nsec = (long)(ns % NS_PER_S) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

double bench_slowdown(void)
{
	static double f;
	if (f == 0) {
		const char *s = getenv("HATCH_BENCH_SLOWDOWN");
		char *end = NULL;
		double v = s ? strtod(s, &end) : 1;
		f = (s && (end == s || *end || !(v >= 1 && v <= 1000))) ? 1 : v;
	}
	return f;
}

uint64_t bench_timeout_ns(uint64_t ns)
{
	return (uint64_t)((double)ns * bench_slowdown());
}

int bench_connect(const char *socket, unsigned wait_ms, struct hatch_client **out,
		  struct hatch_err *err)
{
	uint64_t until = hatch_now_ns() + bench_timeout_ns((uint64_t)wait_ms * NS_PER_MS);
	for (;;) {
		if (hatch_connect(socket, out, err) == 0) {
			hatch_set_timeout(*out, (unsigned)(REPLY_TIMEOUT_MS * bench_slowdown()));
			return 0;
		}
		/* Not there yet, or there but not listening yet. */
		bool early = err->sys_errno == ENOENT || err->sys_errno == ECONNREFUSED;
		if (!early || hatch_now_ns() > until)
			return -1;
		bench_sleep_ns(5 * NS_PER_MS);
	}
}

int bench_pool_counts(struct hatch_client *c, const char *pool,
		      struct pool_counts *pc, struct hatch_err *err)
{
	Hatchery__V1__StatusReply *st = NULL;
	if (hatch_status(c, &st, err) < 0)
		return hatch_err_wrap(err, "status");
	const Hatchery__V1__PoolStatus *p = NULL;
	for (size_t i = 0; i < st->n_pools && !p; i++)
		if (strcmp(st->pools[i]->name, pool) == 0)
			p = st->pools[i];
	if (!p) {
		hatch_free(st);
		return hatch_err_set(err, E(NOT_FOUND), 0, "status: no pool \"%s\"", pool);
	}
	*pc = (struct pool_counts){
		.idle = p->idle,
		.leased = p->leased,
		.spawning = p->spawning,
		.waiting = p->waiting,
		.uptime_ms = st->uptime_ms,
	};
	hatch_free(st);
	return 0;
}

int bench_wait_idle(struct hatch_client *c, const char *pool, unsigned idle,
		    bool settled, uint64_t first_ns, uint64_t poll_ns,
		    uint64_t timeout_ns, struct pool_counts *pc,
		    struct hatch_err *err)
{
	timeout_ns = bench_timeout_ns(timeout_ns);
	uint64_t until = hatch_now_ns() + timeout_ns;
	struct pool_counts last = { 0 };
	if (first_ns)
		bench_sleep_ns(first_ns);
	for (;;) {
		if (bench_pool_counts(c, pool, &last, err) < 0)
			return -1;
		if (last.idle >= idle &&
		    (!settled || (last.spawning == 0 && last.leased == 0)))
			break;
		if (hatch_now_ns() > until)
			return hatch_err_set(err, E(UNAVAILABLE), 0,
					     "pool \"%s\" did not reach %u idle within %llu ms "
					     "(idle %u, spawning %u, leased %u)",
					     pool, idle,
					     (unsigned long long)(timeout_ns / NS_PER_MS),
					     last.idle, last.spawning, last.leased);
		bench_sleep_ns(poll_ns);
	}
	if (pc)
		*pc = last;
	return 0;
}

int bench_pool_stats(struct hatch_client *c, const char *pool,
		     Hatchery__V1__StatsReply **reply,
		     const Hatchery__V1__PoolStats **ps, struct hatch_err *err)
{
	Hatchery__V1__StatsReply *st = NULL;
	if (hatch_stats(c, &st, err) < 0)
		return hatch_err_wrap(err, "stats");
	for (size_t i = 0; i < st->n_pools; i++) {
		if (strcmp(st->pools[i]->name, pool) == 0) {
			*ps = st->pools[i];
			*reply = st;
			return 0;
		}
	}
	hatch_free(st);
	return hatch_err_set(err, E(NOT_FOUND), 0, "stats: no pool \"%s\"", pool);
}

/* ---- arguments -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: hatch-bench PHASE [OPTIONS]\n"
"\n"
"Phases (each appends its figures to the rows file, -o):\n"
"  acquire   acquire -> first VM ping, one hit at a time (-n, --idle)\n"
"  respawn   release -> idle again in a pool of max=1 (-n), and the\n"
"            daemon's spawn -> ready histogram of those spawns\n"
"  refill    cold fill from daemon start, then drain and refill (--idle,\n"
"            --rounds)\n"
"  memory    smaps of every idle child (--idle, --memory-mib,\n"
"            [--meminfo-before KIB])\n"
"  qemu      the peer: qemu-system-x86_64 exec -> QMP greeting (--qemu, -n)\n"
"  qemuboot  the peer booting a tiny guest: exec -> its first byte on the\n"
"            serial port (--qemu, --qemu-guest, -n)\n"
"  echo      booted pool: acquire + echo, one hit at a time (-n, --idle,\n"
"            --payload)\n"
"  cold      booted pool of min_idle=0, max=1: acquire (waits for the spawn)\n"
"            + echo, end to end (-n, --payload)\n"
"  sha256    booted pool running bench-sha256.elf: sha256 of --bytes in the\n"
"            guest against the same C function on the host (-n)\n"
"  save      booted pool: write the restore pools' snapshot (--snapshot),\n"
"            then time Save of a guest that wrote 8 MiB (-n)\n"
"  density   restore pool: lease --idle children, alloc 1 MiB in each,\n"
"            sum their Pss and MemAvailable's drop (--snapshot,\n"
"            [--meminfo-before KIB])\n"
"  qemurestore  the peer: QEMU -incoming from a migration file it saves to\n"
"            --snapshot first: exec -> running (--qemu, -n)\n"
"  linux     linux pool (kind = linux, min_idle = --idle): acquire + Exec\n"
"            true, one hit at a time (-n); every leased child's spawn ->\n"
"            agent ready (VmInfoReply); --execs sequential Execs and --files\n"
"            rounds of a 16 MiB WriteFile + ReadFile on one lease\n"
"  qemulinux the peer booting the same kernel and initramfs (--kernel,\n"
"            --initrd, --cmdline, --vcpus, --memory-mib): exec -> the agent's\n"
"            hello frame on its virtconsole (--qemu, -n)\n"
"  linuxsnap restore pool of a Linux snapshot (-l pre: prerestore = true;\n"
"            -l lease: restore on lease): acquire + Exec true (-n, --idle)\n"
"  linuxdensity  restore pool of a Linux snapshot, prerestore = true: lease\n"
"            --idle clones, Exec true in each, sum their Pss against the\n"
"            snapshot's stored pages + their Private_Dirty (--snapshot)\n"
"  qemulinuxin  the peer: QEMU boots the Linux guest to its agent, migrates\n"
"            it to --snapshot, then -incoming of it -> first Exec true's\n"
"            reply (--qemu, -n, and qemulinux's options)\n"
"  linuxdisk linux pool of max = 1 with a disk: 4 KiB random reads and\n"
"            writes at QD 1 and 32 by /bin/hatch-iobench through Exec, -n\n"
"            I/Os each: IOPS, p50/p99, the backend's CPU per I/O (-l ours:\n"
"            disk = IMG, the leased child's backend; -l qsd: disk_socket to\n"
"            qemu-storage-daemon, --backend-pid)\n"
"  report    read the rows, print the table, write --json\n"
"\n"
"Options:\n"
"  -s, --socket PATH     hatcheryd's socket\n"
"  -p, --pool NAME       pool to use (default \"default\")\n"
"  -l, --label LABEL     suffix of the row names (e.g. 8, 500, ms4)\n"
"  -o, --rows FILE       rows file\n"
"  -n, --count N         timed iterations / runs\n"
"      --idle N          the pool's min_idle\n"
"      --rounds N        refill: drain-refill rounds\n"
"      --memory-mib N    memory: guest memory size of the pool\n"
"      --desc TEXT       acquire, respawn, echo, cold: the run in words, for\n"
"                        the table\n"
"      --jail on|off     acquire, respawn, echo, cold, sha256: fail unless the\n"
"                        daemon's Status\n"
"                        reports its jail on (or off: --no-jail)\n"
"      --wait reaped|idle  acquire: before each timed acquisition wait for a\n"
"                        full pool and the last child reaped (default), or\n"
"                        only for a full pool\n"
"      --meminfo-before KIB  memory: MemAvailable before the daemon started\n"
"      --qemu PATH       qemu: the binary (absent: reported as not installed)\n"
"      --qemu-version S  qemu: its version line, for the record\n"
"      --qemu-guest PATH qemuboot: the tiny PVH kernel (bench/qemu-guest)\n"
"      --qemu-guest-error TEXT  qemuboot: it could not be built, and why\n"
"      --kernel PATH, --initrd PATH, --cmdline TEXT, --vcpus N\n"
"                        linux, qemulinux: the guest (the pool's config must\n"
"                        say the same)\n"
"      --execs N         linux: sequential Execs on one lease (default 1000)\n"
"      --files N         linux: 16 MiB WriteFile + ReadFile rounds (default 3)\n"
"      --backend-pid PID linuxdisk -l qsd: qemu-storage-daemon's pid (its CPU)\n"
"      --payload N       echo, cold: bytes echoed (default 16)\n"
"      --bytes N         sha256: bytes hashed (default 1048576)\n"
"      --snapshot FILE   save, density, qemurestore, linuxdensity,\n"
"                        qemulinuxin: the snapshot file; linux: write 15's\n"
"                        snapshot there (lease, Exec true, Save) at the end\n"
"      --json FILE       report: write the JSON here\n"
"      --commit S        report: source revision, for the record\n"
"      --quick           report: mark the run as a quick one\n"
"      --emulated        report: measured under QEMU's emulator: no targets;\n"
"                        linux, qemulinux: mark the rows as emulation figures\n"
"\n"
"Exit status: 0 when the phase ran; 1 when it could not (an error row is\n"
"appended); 2 on a usage error.\n");
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

enum {
	OPT_IDLE = 256,
	OPT_ROUNDS,
	OPT_MEMORY_MIB,
	OPT_MEMINFO_BEFORE,
	OPT_QEMU,
	OPT_QEMU_VERSION,
	OPT_JSON,
	OPT_COMMIT,
	OPT_QUICK, OPT_EMULATED,
	OPT_WAIT,
	OPT_DESC,
	OPT_JAIL,
	OPT_QEMU_GUEST,
	OPT_QEMU_GUEST_ERROR,
	OPT_PAYLOAD,
	OPT_BYTES,
	OPT_SNAPSHOT,
	OPT_KERNEL,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_VCPUS,
	OPT_EXECS,
	OPT_FILES,
	OPT_BACKEND_PID,
};

struct phase {
	const char *name;
	int (*run)(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
	bool needs_socket;
};

static const struct phase phases[] = {
	{ "acquire", bench_acquire, true },
	{ "respawn", bench_respawn, true },
	{ "refill", bench_refill, true },
	{ "memory", bench_memory, true },
	{ "qemu", bench_qemu, false },
	{ "qemuboot", bench_qemu_boot, false },
	{ "echo", bench_echo, true },
	{ "cold", bench_cold, true },
	{ "sha256", bench_sha256, true },
	{ "save", bench_save, true },
	{ "density", bench_density, true },
	{ "qemurestore", bench_qemu_restore, false },
	{ "linux", bench_linux, true },
	{ "qemulinux", bench_qemu_linux, false },
	{ "linuxsnap", bench_linux_snap, true },
	{ "linuxdensity", bench_linux_density, true },
	{ "qemulinuxin", bench_qemu_linux_incoming, false },
	{ "linuxdisk", bench_linux_disk, true },
};

static const struct option lopts[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "pool", required_argument, NULL, 'p' },
	{ "label", required_argument, NULL, 'l' },
	{ "rows", required_argument, NULL, 'o' },
	{ "count", required_argument, NULL, 'n' },
	{ "idle", required_argument, NULL, OPT_IDLE },
	{ "rounds", required_argument, NULL, OPT_ROUNDS },
	{ "memory-mib", required_argument, NULL, OPT_MEMORY_MIB },
	{ "meminfo-before", required_argument, NULL, OPT_MEMINFO_BEFORE },
	{ "qemu", required_argument, NULL, OPT_QEMU },
	{ "qemu-version", required_argument, NULL, OPT_QEMU_VERSION },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "commit", required_argument, NULL, OPT_COMMIT },
	{ "quick", no_argument, NULL, OPT_QUICK },
	{ "emulated", no_argument, NULL, OPT_EMULATED },
	{ "wait", required_argument, NULL, OPT_WAIT },
	{ "desc", required_argument, NULL, OPT_DESC },
	{ "jail", required_argument, NULL, OPT_JAIL },
	{ "qemu-guest", required_argument, NULL, OPT_QEMU_GUEST },
	{ "qemu-guest-error", required_argument, NULL, OPT_QEMU_GUEST_ERROR },
	{ "payload", required_argument, NULL, OPT_PAYLOAD },
	{ "bytes", required_argument, NULL, OPT_BYTES },
	{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "execs", required_argument, NULL, OPT_EXECS },
	{ "files", required_argument, NULL, OPT_FILES },
	{ "backend-pid", required_argument, NULL, OPT_BACKEND_PID },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

/* The options after the phase's name, into *o (defaults set by the
 * caller). -1 to go on, else the exit status: 0 after --help, 2 for a
 * usage error (said on stderr). */
static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
	int opt;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "s:p:l:o:n:h", lopts, NULL)) != -1) {
		unsigned long long v = 0;
		switch (opt) {
		case 's': o->socket = optarg; break;
		case 'p': o->pool = optarg; break;
		case 'l': o->label = optarg; break;
		case 'o': o->rows = optarg; break;
		case OPT_QEMU: o->qemu = optarg; break;
		case OPT_QEMU_VERSION: o->qemu_version = optarg; break;
		case OPT_JSON: o->json = optarg; break;
		case OPT_COMMIT: o->commit = optarg; break;
		case OPT_QUICK: o->quick = true; break;
		case OPT_EMULATED: o->emulated = true; break;
		case OPT_DESC: o->desc = optarg; break;
		case OPT_SNAPSHOT: o->snapshot = optarg; break;
		case OPT_KERNEL: o->kernel = optarg; break;
		case OPT_INITRD: o->initrd = optarg; break;
		case OPT_CMDLINE: o->cmdline = optarg; break;
		case OPT_QEMU_GUEST: o->qemu_guest = optarg; break;
		case OPT_QEMU_GUEST_ERROR: o->qemu_guest_error = optarg; break;
		case OPT_JAIL:
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
				fprintf(stderr, "hatch-bench: --jail: expected on or off\n");
				return 2;
			}
			o->jail = optarg;
			break;
		case OPT_WAIT:
			if (strcmp(optarg, "reaped") != 0 && strcmp(optarg, "idle") != 0) {
				fprintf(stderr, "hatch-bench: --wait: expected reaped or idle\n");
				return 2;
			}
			o->wait_reaped = strcmp(optarg, "reaped") == 0;
			break;
		case 'h': usage(stdout); return 0;
		case 'n':
		case OPT_IDLE:
		case OPT_ROUNDS:
		case OPT_MEMORY_MIB:
		case OPT_MEMINFO_BEFORE:
		case OPT_PAYLOAD:
		case OPT_BYTES:
		case OPT_VCPUS:
		case OPT_EXECS:
		case OPT_FILES:
		case OPT_BACKEND_PID:
			if (parse_uint(optarg, opt == OPT_MEMINFO_BEFORE ? UINT64_MAX
					       : opt == OPT_PAYLOAD ? 60000 : 10000000,
				       &v) < 0 || (v == 0 && opt != OPT_MEMINFO_BEFORE)) {
				fprintf(stderr, "hatch-bench: --%s: expected a positive integer%s, "
					"got \"%s\"\n", opt == 'n' ? "count" :
					opt == OPT_IDLE ? "idle" : opt == OPT_ROUNDS ? "rounds" :
					opt == OPT_MEMORY_MIB ? "memory-mib" :
					opt == OPT_PAYLOAD ? "payload" : opt == OPT_BYTES ? "bytes" :
					opt == OPT_VCPUS ? "vcpus" : opt == OPT_EXECS ? "execs" :
					opt == OPT_FILES ? "files" :
					opt == OPT_BACKEND_PID ? "backend-pid" : "meminfo-before",
					opt == OPT_PAYLOAD ? " up to 60000 (one packet)" : "", optarg);
				return 2;
			}
			if (opt == 'n') o->count = (unsigned)v;
			else if (opt == OPT_IDLE) o->idle = (unsigned)v;
			else if (opt == OPT_ROUNDS) o->rounds = (unsigned)v;
			else if (opt == OPT_MEMORY_MIB) o->memory_mib = (unsigned)v;
			else if (opt == OPT_PAYLOAD) o->payload = (unsigned)v;
			else if (opt == OPT_BYTES) o->bytes = (unsigned)v;
			else if (opt == OPT_VCPUS) o->vcpus = (unsigned)v;
			else if (opt == OPT_EXECS) o->execs = (unsigned)v;
			else if (opt == OPT_FILES) o->files = (unsigned)v;
			else if (opt == OPT_BACKEND_PID) o->backend_pid = (unsigned)v;
			else o->meminfo_before = v;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "hatch-bench: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (!o->rows) {
		fprintf(stderr, "hatch-bench: -o ROWS is required\n");
		return 2;
	}
	return -1;
}

/* Run `phase` (or the report) with *o; the exit status. A phase that fails
 * leaves an error row behind, for the report to list. */
static int run_phase(const char *phase, const struct bench_opts *o)
{
	struct hatch_err err = { 0 };
	if (strcmp(phase, "report") == 0) {
		if (bench_report(o, &err) < 0) {
			fprintf(stderr, "hatch-bench: report: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	const struct phase *ph = NULL;
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(phases); i++)
		if (strcmp(phases[i].name, phase) == 0)
			ph = &phases[i];
	if (!ph) {
		fprintf(stderr, "hatch-bench: unknown phase \"%s\"\n", phase);
		usage(stderr);
		return 2;
	}
	if (ph->needs_socket && !o->socket) {
		fprintf(stderr, "hatch-bench: %s: -s SOCKET is required\n", phase);
		return 2;
	}
	FILE *rows = fopen(o->rows, "ae");
	if (!rows) {
		fprintf(stderr, "hatch-bench: open %s: %s\n", o->rows, strerror(errno));
		return 1;
	}
	int r = ph->run(o, rows, &err);
	if (r < 0) {
		fprintf(stderr, "hatch-bench: %s: %s\n", phase, err.msg);
		/* The report lists what could not be measured, and why. */
		char name[128];
		snprintf(name, sizeof(name), "error.%s%s%s", phase, *o->label ? "." : "",
			 o->label);
		row_begin(rows, name, "-", NULL);
		row_str(rows, "phase", phase);
		row_str(rows, "error", err.msg);
		row_end(rows);
	}
	if (fclose(rows) != 0) {
		fprintf(stderr, "hatch-bench: write %s: %s\n", o->rows, strerror(errno));
		return 1;
	}
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-') {
		bool help = argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
		usage(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	const char *phase = argv[1];
	struct bench_opts o = {
		.pool = "default",
		.label = "",
		.count = 1000,
		.idle = 8,
		.rounds = 3,
		.memory_mib = 64,
		.wait_reaped = true,
		.payload = 16,
		.bytes = 1u << 20,
		.vcpus = 1,
		.execs = 1000,
		.files = 3,
	};
	int r = parse_opts(argc, argv, &o);
	if (r >= 0)
		return r;
	return run_phase(phase, &o);
}
