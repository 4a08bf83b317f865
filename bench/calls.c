/* calls.c - the phases against booted pools: guest calls.
 *
 *   echo    acquire + echo from a full pool of booted VMs, one hit at a
 *           time (the acquire phase's loop, with a guest call in place of
 *           the VM ping), with the acquire / echo split and a second echo
 *   cold    the cold path end to end: a pool of min_idle=0, max=1, so that
 *           each acquisition waits for a fork, the jail, the VM and the
 *           guest's boot to ready, then the echo
 *   sha256  SHA-256 of 1 MiB inside the guest against the same C function
 *           on the host
 *
 * As in measure.c, only the step a figure names sits between its two clock
 * readings; the waits that prepare it are untimed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "bench.h"
#include "host_sha256.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define WARMUP 20u
#define US 1000.0 /* row_dist scale: ns -> µs */

/* The echo payload: o->payload bytes of a fixed, printable pattern. */
static uint8_t *echo_payload(unsigned len)
{
	uint8_t *p = malloc(len ? len : 1);
	for (unsigned i = 0; p && i < len; i++)
		p[i] = (uint8_t)('a' + i % 26);
	return p;
}

/* What an echo sends: o->payload bytes of echo_payload(). */
struct echo {
	const uint8_t *payload;
	unsigned len;
};

/* One echo on vm_fd (a lease_call_fn, ctx a struct echo); fails unless the
 * reply is the payload. */
static int echo_once(int fd, const void *ctx, uint64_t *run_ns, struct hatch_err *err)
{
	const struct echo *x = ctx;
	Hatchery__V1__VmCallReply *rep = NULL;
	if (hatch_vm_call(fd, "echo", x->payload, x->len, 0, &rep, err) < 0)
		return hatch_err_wrap(err, "echo");
	bool same = rep->result.len == x->len &&
		    memcmp(rep->result.data, x->payload, x->len) == 0;
	*run_ns = rep->run_ns;
	hatch_free(rep);
	if (!same)
		return hatch_err_set(err, E(INTERNAL), 0, "echo: the reply is not the payload");
	return 0;
}

/* bench_lease_loop with an echo of l->payload bytes as the call. */
static int echo_loop(struct hatch_client *c, const struct bench_opts *o,
		     const struct lease_loop *l, struct lease_samples *ls,
		     struct hatch_err *err)
{
	_cleanup_free_ uint8_t *payload = echo_payload(l->payload);
	if (!payload)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "payload");
	const struct echo x = { payload, l->payload };
	struct lease_loop echo = *l;
	echo.call = echo_once;
	echo.ctx = &x;
	return bench_lease_loop(c, o, &echo, ls, err);
}

/* ---- 7: acquire + echo, booted pool, 8 idle ----------------------------------- */

int bench_echo(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 2 * NS_PER_MS, 120 * NS_PER_S,
			    NULL, err) < 0)
		return -1;
	/* As in the acquire phase: before each cycle a full pool, nothing
	 * spawning, the last released child reaped. */
	const struct lease_loop l = {
		.what = "echo",
		.cycles = "acquisitions",
		.idle = o->idle,
		.settled = true,
		.wait_timeout_ns = 10 * NS_PER_S,
		.untimed_wait = "until idle >= min_idle, nothing spawning, released child reaped",
		.acquire_ms = 1000,
		.calls = 2,
		.payload = o->payload,
		.warmup = WARMUP,
		.max_failures = o->count / 100 + 10,
	};
	_cleanup_lease_samples_ struct lease_samples ls = { 0 };
	if (echo_loop(c, o, &l, &ls, err) < 0)
		return -1;

	char what[80];
	snprintf(what, sizeof(what), "acquire + echo (%u B) round trip", o->payload);
	const struct series series[] = {
		{ "acquire_echo", what, &ls.total },
		{ "acquire", "  acquire alone", &ls.acquire },
		{ "acquire_in_daemon", "    in hatcheryd (AcquireReply.wait_ns)", &ls.in_daemon },
		{ "first_echo", "  echo alone (the VM's first call)", &ls.call[0] },
		{ "first_echo_run", "    in the child's vCPU loop (VmCallReply.run_ns)", &ls.run[0] },
		{ "second_echo", "  second echo on the same VM (warm, untargeted)", &ls.call[1] },
		{ "second_echo_run", "    in the child's vCPU loop (VmCallReply.run_ns)",
		  &ls.run[1] },
		{ "release", "  hatch_vm_release (untargeted)", &ls.release },
	};
	return bench_emit_lease_rows(c, o, rows, &l, &ls, series, HATCH_ARRAY_SIZE(series),
				     o->desc ? o->desc : "booted", err);
}

/* ---- 8: the cold path, end to end ---------------------------------------------- */

/* A pool of min_idle=0, max=1: nothing waits ready, so Acquire parks the
 * request and the daemon forks a child for it (fork, jail, VM, guest boot
 * to ready), then leases it. Timed from just before hatch_acquire to the
 * echo's reply. Before each cycle the pool must be empty and quiet: the
 * previous child reaped, nothing spawning. */
int bench_cold(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	const struct lease_loop l = {
		.what = "cold",
		.cycles = "cycles",
		.idle = 0,
		.settled = true,
		.cold = true,
		.wait_timeout_ns = 30 * NS_PER_S,
		.untimed_wait = "until the pool is empty: previous child reaped, nothing spawning",
		.acquire_ms = 5000,
		.calls = 1,
		.payload = o->payload,
		.warmup = 3,
		.max_failures = o->count / 20 + 3,
	};
	_cleanup_lease_samples_ struct lease_samples ls = { 0 };
	if (echo_loop(c, o, &l, &ls, err) < 0)
		return -1;

	char what[120];
	snprintf(what, sizeof(what),
		 "cold path: acquire (fork, jail, VM, guest boot) + echo (%u B)", o->payload);
	const struct series series[] = {
		{ "acquire_echo", what, &ls.total },
		{ "acquire", "  acquire alone (waits for the spawn)", &ls.acquire },
		{ "acquire_in_daemon", "    in hatcheryd (AcquireReply.wait_ns)", &ls.in_daemon },
		{ "first_echo", "  echo alone (the VM's first call)", &ls.call[0] },
		{ "first_echo_run", "    in the child's vCPU loop (VmCallReply.run_ns)", &ls.run[0] },
	};
	return bench_emit_lease_rows(c, o, rows, &l, &ls, series, HATCH_ARRAY_SIZE(series),
				     o->desc ? o->desc : "min_idle=0 max=1", err);
}

/* ---- 9: sha256 in the guest against the host ------------------------------------ */

/* The largest payload the default guest's sha256 takes in one call: the
 * VM socket's packet is 64 KiB with its envelope (docs/protocol.md). */
#define PAYLOAD_MAX_SHA 64000u

static int guest_call(int fd, const char *fn, const void *in, size_t len, uint32_t deadline_ms,
		      uint8_t digest[32], uint64_t *run_ns, struct hatch_err *err)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	if (hatch_vm_call(fd, fn, in, len, deadline_ms, &rep, err) < 0)
		return hatch_err_wrap(err, "%s", fn);
	if (digest) {
		size_t got = rep->result.len;
		if (got != 32) {
			hatch_free(rep);
			return hatch_err_set(err, E(INTERNAL), 0, "%s: a %zu-byte result", fn,
					     got);
		}
		memcpy(digest, rep->result.data, 32);
	}
	if (run_ns)
		*run_ns = rep->run_ns;
	hatch_free(rep);
	return 0;
}

static void hex(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void ratio_row(FILE *rows, const char *name, const char *label, struct samples *g,
		      struct samples *h)
{
	double hp = (double)samples_pct(h, 50);
	row_begin(rows, name, "x", label);
	row_num(rows, "value", hp > 0 ? (double)samples_pct(g, 50) / hp : 0);
	row_num(rows, "guest_p50_us", (double)samples_pct(g, 50) / US);
	row_num(rows, "host_p50_us", hp / US);
	row_end(rows);
}

/* One VM of a booted pool running bench/sha256-guest (the default guest's
 * functions plus fill and sha256_heap). The 1 MiB figure hashes a heap
 * buffer the guest filled (a call's payload cannot be 1 MiB); the guest
 * side is VmCallReply.run_ns, the time vmproc spent in its vCPU loop for
 * the call: one entry into the guest, the hash, one exit. The host side
 * is host_sha256() -- the same function from the same source file -- on
 * the same bytes, in this process. Guest and host runs alternate, so that
 * a change in the machine's speed during the phase hits both. The digests
 * must agree. */
int bench_sha256(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	if (bench_wait_idle(c, o->pool, 1, true, 0, 2 * NS_PER_MS, 60 * NS_PER_S, NULL,
			    err) < 0)
		return -1;
	int fd = -1;
	if (hatch_acquire(c, o->pool, 5000, &fd, NULL, err) < 0)
		return hatch_err_wrap(err, "acquire");
	_cleanup_close_ int vm = fd;

	const uint64_t n = o->bytes;
	_cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "buffer");
	host_pattern(buf, n);
	char num[32];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
	if (guest_call(vm, "fill", num, strlen(num), 10000, NULL, NULL, err) < 0)
		return -1;

	uint8_t dg[32], dh[32], digest_mib[32] = { 0 };
	_cleanup_samples_ struct samples g = { 0 }, gcall = { 0 }, h = { 0 }, gp = { 0 },
					 hpay = { 0 };
	const unsigned warm = 3;
	for (unsigned i = 0; i < o->count + warm; i++) {
		uint64_t run = 0;
		uint64_t t0 = hatch_now_ns();
		if (guest_call(vm, "sha256_heap", NULL, 0, 10000, dg, &run, err) < 0)
			return -1;
		uint64_t t1 = hatch_now_ns();
		host_sha256(buf, n, dh);
		uint64_t t2 = hatch_now_ns();
		if (memcmp(dg, dh, 32) != 0) {
			char a[65], b[65];
			hex(dg, a);
			hex(dh, b);
			return hatch_err_set(err, E(INTERNAL), 0,
					     "sha256 of %llu bytes: guest %s, host %s",
					     (unsigned long long)n, a, b);
		}
		memcpy(digest_mib, dh, 32);
		if (i < warm)
			continue;
		int e = samples_add(&g, run);
		e = e ?: samples_add(&gcall, t1 - t0);
		e = e ?: samples_add(&h, t2 - t1);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	/* The default guest's own path: sha256 of a payload, the largest one
	 * packet carries. Per call, the entry and exit weigh more here. */
	const uint64_t np = n < PAYLOAD_MAX_SHA ? n : PAYLOAD_MAX_SHA;
	for (unsigned i = 0; i < o->count + warm; i++) {
		uint64_t run = 0;
		if (guest_call(vm, "sha256", buf, np, 10000, dg, &run, err) < 0)
			return -1;
		uint64_t t1 = hatch_now_ns();
		host_sha256(buf, np, dh);
		uint64_t t2 = hatch_now_ns();
		if (memcmp(dg, dh, 32) != 0)
			return hatch_err_set(err, E(INTERNAL), 0,
					     "sha256 of a %llu-byte payload: guest and host differ",
					     (unsigned long long)np);
		if (i < warm)
			continue;
		int e = samples_add(&gp, run);
		e = e ?: samples_add(&hpay, t2 - t1);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	struct hatch_err rerr = { 0 };
	if (hatch_vm_release(vm, &rerr) < 0)
		fprintf(stderr, "hatch-bench: release: %s\n", rerr.msg);
	vm = -1; /* closed by hatch_vm_release */

	char label[200], digest[65];
	hex(digest_mib, digest);
	double kib = (double)n / 1024.0;
	snprintf(label, sizeof(label),
		 "sha256 of %.0f KiB in the guest (heap buffer), VmCallReply.run_ns", kib);
	row_begin(rows, "sha256.guest", "us", label);
	row_dist(rows, &g, US);
	row_num(rows, "bytes", (double)n);
	row_str(rows, "function", "sha256_heap -> guest/default/main.c hatch_fn_sha256");
	row_str(rows, "digest", digest);
	row_end(rows);
	row_begin(rows, "sha256.guest_call", "us",
		  "  the same calls, client round trip (hatch_vm_call)");
	row_dist(rows, &gcall, US);
	row_end(rows);
	snprintf(label, sizeof(label),
		 "sha256 of %.0f KiB on the host, the same C function (host_sha256.c)", kib);
	row_begin(rows, "sha256.host", "us", label);
	row_dist(rows, &h, US);
	row_num(rows, "bytes", (double)n);
	row_end(rows);
	snprintf(label, sizeof(label), "sha256 of %.0f KiB, guest run_ns / host, p50", kib);
	ratio_row(rows, "sha256.guest_vs_host", label, &g, &h);

	snprintf(label, sizeof(label),
		 "sha256 of a %llu B payload in the guest (default sha256), run_ns",
		 (unsigned long long)np);
	row_begin(rows, "sha256.payload.guest", "us", label);
	row_dist(rows, &gp, US);
	row_num(rows, "bytes", (double)np);
	row_end(rows);
	snprintf(label, sizeof(label), "sha256 of %llu B on the host",
		 (unsigned long long)np);
	row_begin(rows, "sha256.payload.host", "us", label);
	row_dist(rows, &hpay, US);
	row_end(rows);
	snprintf(label, sizeof(label), "sha256 of a %llu B payload, guest run_ns / host, p50",
		 (unsigned long long)np);
	ratio_row(rows, "sha256.payload.guest_vs_host", label, &gp, &hpay);
	return 0;
}
