/* report_text.c - the report on stdout: the machine, the figures by unit,
 * the targets and their notes (with this run's figures), the peers, and
 * what could not be measured. See report.h. */
#include <math.h>
#include <string.h>

#include "report.h"

/* ---- formatting ---------------------------------------------------------------- */

static const char *unit_sym(const char *u)
{
	return strcmp(u, "children/s") == 0 ? "/s" : u;
}

/* Four significant-ish figures, no more width than needed. */
static const char *fmt(char *buf, size_t len, double v)
{
	double a = fabs(v);
	snprintf(buf, len, a >= 1000 ? "%.0f" : a >= 100 ? "%.1f" : a >= 10 ? "%.2f" : "%.3f", v);
	return buf;
}

static const char *label_or_name(const struct row *r)
{
	const char *l = row_get(r, "label");
	return l ? l : row_get(r, "name");
}

/* ---- the figures, by unit ----------------------------------------------------- */

/* Does row r belong in the section of `unit`, among the Linux guests' rows
 * (linux) or the others? */
static bool in_section(const struct row *r, const char *unit, bool linux_rows)
{
	return strcmp(row_get(r, "unit"), unit) == 0 && !report_is_error_row(r) &&
	       !report_is_ref_row(r) && report_is_linux_row(r) == linux_rows;
}

static void print_rows(const struct rows *rs, const char *unit, const char *title,
		       bool linux_rows)
{
	int w = 10;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (in_section(r, unit, linux_rows)) {
			int l = (int)strlen(label_or_name(r));
			if (l > w)
				w = l;
		}
	}
	bool header = false;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (!in_section(r, unit, linux_rows))
			continue;
		if (!header) {
			printf("\n%-*s %7s %9s %9s %9s %9s\n", w, title, "n", "p50", "p90",
			       "p99", "max");
			header = true;
		}
		char b[5][32];
		double v;
		const char *cell[5] = { "", "", "", "", "" };
		static const char *const keys[5] = { "n", "p50", "p90", "p99", "max" };
		for (int k = 0; k < 5; k++) {
			if (!row_get_num(r, keys[k], &v))
				continue;
			if (k == 0)
				snprintf(b[k], sizeof(b[k]), "%.0f", v);
			cell[k] = k == 0 ? b[k] : fmt(b[k], sizeof(b[k]), v);
		}
		/* Single figures (a rate, a hit rate) sit in the p50 column. */
		if (!*cell[1] && row_get_num(r, "value", &v))
			cell[1] = fmt(b[1], sizeof(b[1]), v);
		printf("%-*s %7s %9s %9s %9s %9s\n", w, label_or_name(r), cell[0], cell[1],
		       cell[2], cell[3], cell[4]);
	}
}

static void print_section(const struct rows *rs, const char *unit, const char *title)
{
	print_rows(rs, unit, title, false);
}

/* ---- the notes under the targets ---------------------------------------------- */

/* p50 of row `name` formatted into buf, or "?". */
static const char *p50_of(const struct rows *rs, const char *name, char *buf, size_t len)
{
	double x;
	if (!row_get_num(rows_find(rs, name), "p50", &x)) {
		snprintf(buf, len, "?");
		return buf;
	}
	return fmt(buf, len, x);
}

/* This run's p50s of an acquire + echo phase (calls.c: echo, cold), its
 * rows SERIES.LABEL, formatted; "?" for a row that is not there. */
struct echo_p50 {
	char acquire[32], in_daemon[32];
	char echo[32], echo_run[32];   /* the VM's first call */
	char echo2[32], echo2_run[32]; /* the second (echo only) */
};

static void echo_p50s(const struct rows *rs, const char *label, struct echo_p50 *p)
{
	const struct {
		const char *series;
		char *buf;
	} f[] = {
		{ "acquire", p->acquire },
		{ "acquire_in_daemon", p->in_daemon },
		{ "first_echo", p->echo },
		{ "first_echo_run", p->echo_run },
		{ "second_echo", p->echo2 },
		{ "second_echo_run", p->echo2_run },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(f); i++) {
		char name[96];
		snprintf(name, sizeof(name), "%s.%s", f[i].series, label);
		p50_of(rs, name, f[i].buf, sizeof(p->acquire));
	}
}

/* The notes [d] to [g]: booted pools (7-9), with this run's figures. */
static void print_call_notes(const struct rows *rs)
{
	char b[5][32];
	double x = 0, n = 0;
	struct echo_p50 e8, cold;
	echo_p50s(rs, "booted8", &e8);
	echo_p50s(rs, "cold", &cold);
	row_get_num(rows_find(rs, ECHO8), "n", &n);
	printf("[d] booted pool (kind = booted, the default guest ELF, min_idle=8,\n"
	       "    jailed): hatch_acquire, then hatch_vm_call(echo, 16 B) on the fresh VM,\n"
	       "    one at a time on the hit path of a full, quiet pool; %.0f acquisitions.\n"
	       "    This run, p50:\n"
	       "      acquire %s us (in hatcheryd %s us)\n"
	       "      first echo %s us, of which %s us in the child's vCPU loop\n"
	       "      second echo on the same VM %s us, of which %s us in the vCPU loop\n"
	       "    mimobox's %.0f us (microVM warm pool, before pool.acquire() to after\n"
	       "    execute(echo) returns, P50) is its published figure, other hardware.\n",
	       n, e8.acquire, e8.in_daemon, e8.echo, e8.echo_run, e8.echo2, e8.echo2_run,
	       MIMOBOX_ECHO_US);
	n = 0;
	row_get_num(rows_find(rs, COLD), "n", &n);
	printf("[e] cold path, end to end: a booted pool of min_idle=0, max=1;\n"
	       "    hatch_acquire (deadline 5 s) waits while hatcheryd forks a child, jails\n"
	       "    it, builds the VM and boots the guest to ready; then echo (16 B). From\n"
	       "    just before the acquire to the echo's reply; the pool empty and quiet\n"
	       "    before each of the %.0f cycles. This run, p50:\n"
	       "      acquire %s us (in hatcheryd %s us), echo %s us\n"
	       "    The sum (info): that pool's spawn -> ready p50 from the daemon's\n"
	       "    histogram (fork -> guest ready), %s us, plus [d]'s acquire + echo p50.\n",
	       n, cold.acquire, cold.in_daemon, cold.echo,
	       p50_of(rs, COLD_SPAWN, b[0], sizeof(b[0])));
	const struct row *cq = rows_find(rs, COLD_VS_QEMU);
	const struct row *bs = rows_find(rs, "qemu.boot.status");
	const char *basis = cq ? row_get(cq, "basis") : NULL;
	if (basis && strcmp(basis, "qemu.boot") == 0) {
		printf("[f] QEMU: qemu-system-x86_64 -M microvm -accel kvm -kernel tiny.elf\n"
		       "    (bench/qemu-guest: a PVH kernel that writes one byte to COM1 and\n"
		       "    halts), from just before fork/exec to that byte on its stdout\n"
		       "    (-serial stdio), then QEMU is killed; p50 %s us.\n",
		       p50_of(rs, "qemu.boot", b[0], sizeof(b[0])));
	} else {
		printf("[f] FALLBACK: QEMU did not boot the tiny guest:\n"
		       "      %s\n"
		       "    so the ratio is over exec -> QMP greeting of an empty, paused microvm\n"
		       "    (p50 %s us) instead, which runs no guest code at all.\n",
		       bs && row_get(bs, "error") ? row_get(bs, "error") : "not measured",
		       p50_of(rs, "qemu.greeting", b[0], sizeof(b[0])));
	}
	double bytes = 0;
	row_get_num(rows_find(rs, "sha256.guest"), "bytes", &bytes);
	row_get_num(rows_find(rs, "sha256.payload.guest"), "bytes", &x);
	printf("[g] guest: VmCallReply.run_ns -- the time vmproc spent in its vCPU loop\n"
	       "    for the call: one entry into the guest, the hash, one exit, the\n"
	       "    deadline timer -- of sha256_heap in bench/sha256-guest, which runs the\n"
	       "    default guest's sha256 function on a %.0f-byte buffer the guest filled\n"
	       "    in its heap beforehand: a 1 MiB payload cannot travel, a call's payload\n"
	       "    is bounded by the VM socket's 64 KiB packet. Host: the same function\n"
	       "    from the same file (guest/default/main.c, included by\n"
	       "    bench/host_sha256.c and compiled with the guest's -O2 flags) on the\n"
	       "    same bytes, in hatch-bench. Guest and host runs alternate; the digests\n"
	       "    must agree. This run, p50:\n"
	       "      guest %s us (client round trip %s us), host %s us\n"
	       "    The %.0f B row: the default guest's own sha256 on a payload, one\n"
	       "    packet's worth: guest %s us, host %s us.\n",
	       bytes, p50_of(rs, "sha256.guest", b[0], sizeof(b[0])),
	       p50_of(rs, "sha256.guest_call", b[1], sizeof(b[1])),
	       p50_of(rs, "sha256.host", b[2], sizeof(b[2])), x,
	       p50_of(rs, "sha256.payload.guest", b[3], sizeof(b[3])),
	       p50_of(rs, "sha256.payload.host", b[4], sizeof(b[4])));
}

/* The notes [h] to [k]: snapshots (10-13), with this run's figures. */
static void print_snap_notes(const struct rows *rs)
{
	char b[6][32];
	double n = 0, m = 0, x = 0, y = 0;
	const struct row *sf = rows_find(rs, "snapshot.file");
	row_get_num(rows_find(rs, RLEASE), "n", &n);
	row_get_num(rows_find(rs, RPRE), "n", &m);
	row_get_num(sf, "allocated_bytes", &x);
	printf("[h] restore pools (kind = restore, min_idle=8, jailed) of one snapshot\n"
	       "    written in this run: a booted pool's leased VM after one echo, saved\n"
	       "    with hatch_vm_save (%.0f KiB allocated). Same loop as [d]: acquire,\n"
	       "    echo (16 B), hit path of a full quiet pool; %.0f (prerestore = false:\n"
	       "    the restore runs on lease, before the first call) and %.0f\n"
	       "    (prerestore = true) acquisitions. First echo p50: %s us / %s us.\n",
	       x / 1024, n, m,
	       p50_of(rs, "first_echo.rlease", b[0], sizeof(b[0])),
	       p50_of(rs, "first_echo.rpre", b[1], sizeof(b[1])));
	const struct row *qs = rows_find(rs, "qemu.restore.status");
	const struct row *q = rows_find(rs, QRESTORE);
	if (q) {
		x = y = 0;
		row_get_num(q, "file_allocated_bytes", &x);
		row_get_num(q, "n", &y);
		printf("[i] QEMU: an empty microvm (-m 64, -S: no guest; QEMU's own firmware\n"
		       "    never ran) migrated once to a file (exec:cat > FILE, %.0f KiB),\n"
		       "    then, %.0f times, fork/exec qemu -incoming \"exec:cat FILE\",\n"
		       "    qmp_capabilities, query-status polled until the migration is in,\n"
		       "    cont, until query-status says running: p50 %s us (QMP greeting\n"
		       "    alone %s us). The issue quotes ~48 ms for QEMU here.\n",
		       x / 1024, y, p50_of(rs, QRESTORE, b[0], sizeof(b[0])),
		       p50_of(rs, "qemu.restore.greeting", b[1], sizeof(b[1])));
	} else {
		printf("[i] QEMU restore not measured: %s\n",
		       qs && row_get(qs, "error") ? row_get(qs, "error") : "qemu did not run");
	}
	const struct row *sv = rows_find(rs, "save.8mib");
	x = 0;
	row_get_num(sv, "n", &x);
	printf("[j] Save: lease a booted VM (64 MiB), alloc 8 (the default guest touches\n"
	       "    8 MiB of heap), hatch_vm_save to a fresh file; timed on the client\n"
	       "    around hatch_vm_save, %.0f saves (2 warm-up). p50: vCPU state %s us,\n"
	       "    irqchip/PIT/clock %s us, writing the file %s us. File p50: st_size\n"
	       "    %s KiB, allocated %s KiB (st_blocks*512) against 8192 KiB written;\n"
	       "    the rest is the guest's image, stack, heap header and the state.\n",
	       x, p50_of(rs, "save.8mib.vcpu", b[0], sizeof(b[0])),
	       p50_of(rs, "save.8mib.vm", b[1], sizeof(b[1])),
	       p50_of(rs, "save.8mib.memory", b[2], sizeof(b[2])),
	       p50_of(rs, "save.8mib.st_size", b[3], sizeof(b[3])),
	       p50_of(rs, "save.8mib.allocated", b[4], sizeof(b[4])));
	const struct row *db = rows_find(rs, DENSITY_BUDGET);
	const struct row *dh = rows_find(rs, DENSITY_HOST);
	double c = 0, bud = 0, w = 0, sk = 0, pd = 0, hb = 0, hd = 0, hc = 0, idle = 0;
	row_get_num(db, "children", &c);
	row_get_num(db, "budget_kib", &bud);
	row_get_num(db, "written_kib", &w);
	row_get_num(db, "snapshot_kib", &sk);
	row_get_num(db, "idle_private_dirty_kib_each", &pd);
	row_get_num(dh, "budget_kib", &hb);
	row_get_num(dh, "drop_kib", &hd);
	row_get_num(dh, "children", &hc);
	row_get_num(rows_find(rs, DENSITY), "idle_children_also_running", &idle);
	double lpd = 0;
	row_get_num(rows_find(rs, DENSITY), "private_dirty_kib", &lpd);
	if (db)
		printf("[k] a restore pool (prerestore = true, memory_mib 64) of the [h] snapshot,\n"
		       "    min_idle = N = %.0f, max = N + 20: N leased, alloc 1 (1 MiB written)\n"
		       "    on each, all kept leased; Pss from /proc/PID/smaps_rollup summed over\n"
		       "    the N (Pss splits the snapshot's shared page-cache pages). Budget\n"
		       "    %.0f KiB = %.0f KiB written + %.0f KiB snapshot (allocated) + N x %s\n"
		       "    KiB (an idle child's Private_Dirty, guest mapping excluded, 4, 8\n"
		       "    idle). Host: MemAvailable before the daemon started against after\n"
		       "    the leases, %.0f KiB over all %.0f children (the %.0f idle\n"
		       "    replacements included, budget scaled to them: %.0f KiB); other\n"
		       "    activity on the machine moves it too. Pss also carries each\n"
		       "    child's share of hatcheryd's binary and libc pages, which the\n"
		       "    budget's idle Private_Dirty does not; the N children's summed\n"
		       "    Private_Dirty (guest mapping included) is %.0f KiB.\n",
		       c, bud, w, sk, fmt(b[5], sizeof(b[5]), pd), hd, hc, idle, hb, lpd);
	else
		printf("[k] density not measured (no density row or no idle Private_Dirty\n"
		       "    from 4: see the errors below)\n");
}

/* The notes [a], [b], [c] of the targets' labels, with this run's figures. */
static void print_target_notes(const struct rows *rs)
{
	const struct row *j = rows_find(rs, SPAWN_JAILED);
	const struct row *u = rows_find(rs, SPAWN_NOJAIL);
	const struct row *c = rows_find(rs, JAIL_COST);
	double nj = 0, nu = 0, res = 0, x;
	char b[3][32];
	row_get_num(j, "n", &nj);
	row_get_num(u, "n", &nu);
	printf("\n[a] the core issue's spawn -> ready target, set against the spawn without\n"
	       "    the jail; the jailed spawn has its own target, and so has the difference.\n");
	printf("[b] hatcheryd's own spawn -> ready histogram (fork -> Ready), pool min_idle=1\n"
	       "    max=1: one spawn at a time, each with the machine to itself. %.0f spawns\n"
	       "    jailed (Status: jail \"%s\"), %.0f with --no-jail (jail \"%s\").\n",
	       nj, j && row_get(j, "jail") ? row_get(j, "jail") : "?", nu,
	       u && row_get(u, "jail") ? row_get(u, "jail") : "?");
	if (c && row_get_num(c, "p50_resolution_us", &res))
		printf("    Percentiles are bucket upper edges (16 per octave): the jail cost\n"
		       "    is good to about +-%s us.\n", fmt(b[0], sizeof(b[0]), res));
	const struct row *r = rows_find(rs, "respawn.1");
	const struct row *ex = rows_find(rs, "respawn.exit.1");
	const struct row *sp = rows_find(rs, "respawn.spawn.1");
	printf("[c] info, no target: release -> idle again is the whole cycle as the client\n"
	       "    sees it: the old child's exit, including its VM's kernel teardown (slow\n"
	       "    with KVM_CREATE_IRQCHIP: ~10-25 ms here), the reap, the fork and the new\n"
	       "    child's spawn -> ready. The 1500 us target is spawn -> ready's ([a]).");
	if (r && ex && sp && row_get_num(ex, "p50", &x)) {
		double y = 0;
		row_get_num(sp, "p50", &y);
		printf("\n    This run, p50: release -> replacement seen spawning %s us, seen\n"
		       "    spawning -> idle %s us.", fmt(b[1], sizeof(b[1]), x),
		       fmt(b[2], sizeof(b[2]), y));
	}
	printf("\n");
	print_call_notes(rs);
	print_snap_notes(rs);
	printf("[l] Linux guests: see LINUX GUESTS below.\n");
	printf("[m] Linux snapshots: see LINUX GUESTS below.\n");
	printf("[n] Disk: see LINUX GUESTS below.\n");
}

/* ---- the targets --------------------------------------------------------------- */

static void print_targets(const struct rows *rs)
{
	int w = 10;
	for (size_t i = 0; i < report_ntargets; i++) {
		int l = (int)strlen(report_targets[i].what);
		if (l > w)
			w = l;
	}
	printf("\n#  %-*s %12s %14s %7s  %s\n", w, "TARGETS", "figure", "target", "ratio",
	       "verdict");
	for (size_t i = 0; i < report_ntargets; i++) {
		const struct target *t = &report_targets[i];
		const struct row *r = rows_find(rs, t->row);
		const char *u = r ? unit_sym(row_get(r, "unit")) : "";
		struct verdict v = report_judge(rs, t);
		char fig[48], tgt[48], b[32], rat[32];
		if (v.have)
			snprintf(fig, sizeof(fig), "%s %s", fmt(b, sizeof(b), v.figure), u);
		else
			snprintf(fig, sizeof(fig), "-");
		if (t->cmp == INFO)
			snprintf(tgt, sizeof(tgt), "-");
		else
			snprintf(tgt, sizeof(tgt), "%s %s %s",
				 t->cmp == AT_LEAST ? ">=" : "<=",
				 fmt(b, sizeof(b), t->limit), u);
		snprintf(rat, sizeof(rat), "%.2f", v.ratio);
		/* The QEMU ratio falls back to the QMP greeting when the tiny
		 * guest did not boot: say so on its line. */
		const char *basis = strcmp(t->row, COLD_VS_QEMU) == 0 ? row_get(r, "basis") : NULL;
		bool fallback = basis && strcmp(basis, "qemu.boot") != 0;
		printf("%-2d %-*s %12s %14s %7s  %s%s\n", t->m, w, t->what, fig, tgt,
		       v.have && t->cmp != INFO && !v.emulated ? rat : "-",
		       !v.have ? "n/a" : v.emulated ? "EMULATED (not judged)"
		       : t->cmp == INFO ? "info" : v.pass ? "PASS" : "MISS",
		       fallback ? " (FALLBACK: over QEMU's QMP greeting, see [f])" : "");
	}
	print_target_notes(rs);
}

/* ---- the peers ----------------------------------------------------------------- */

static void print_peer_qmp(const struct rows *rs)
{
	const struct row *st = rows_find(rs, "qemu.status");
	printf("\nPEER: QEMU (%s)\n",
	       st && row_get(st, "version") ? row_get(st, "version") : "qemu-system-x86_64");
	if (!st) {
		printf("  not measured\n");
		return;
	}
	const char *status = row_get(st, "status");
	if (strcmp(status, "ok") != 0) {
		printf("  qemu: %s\n", row_get(st, "error") ? row_get(st, "error") : status);
		return;
	}
	if (row_get(st, "stderr"))
		printf("  (qemu's stderr: %s)\n", row_get(st, "stderr"));
	struct report_peer p = report_peer_figures(rs);
	if (!p.have) {
		printf("  no successful run\n");
		return;
	}
	char b[3][32];
	printf("  exec -> QMP greeting p50 %s us (capabilities answered %s us, exited "
	       "after quit %s us)\n", fmt(b[0], sizeof(b[0]), p.greeting),
	       fmt(b[1], sizeof(b[1]), p.caps), fmt(b[2], sizeof(b[2]), p.exit));
	if (p.have_spawn)
		printf("  = %.1fx hatchery's cold spawn-to-ready p50 (jailed, max=1, daemon "
		       "histogram)\n",
		       p.over_spawn);
	if (p.have_respawn)
		printf("  = %.1fx hatchery's release -> idle again p50 (max=1, client)\n",
		       p.over_respawn);
	if (p.have_acquire)
		printf("  = %.0fx hatchery's acquire -> first VM ping p50 (8 idle)\n",
		       p.over_acquire);
}

/* QEMU booting the tiny guest, against hatchery's cold path; and the
 * published mimobox figures against ours. */
static void print_peer_boot(const struct rows *rs)
{
	char b[4][32];
	double q, cold, x;
	const struct row *st = rows_find(rs, "qemu.boot.status");
	printf("  tiny guest (bench/qemu-guest/tiny.elf, PVH, one byte to COM1), booted:\n");
	if (!st) {
		printf("    not measured\n");
	} else if (strcmp(row_get(st, "status"), "ok") != 0) {
		printf("    did not boot: %s\n", row_get(st, "error") ? row_get(st, "error")
							     : row_get(st, "status"));
		if (row_get_num(rows_find(rs, COLD_VS_QEMU), "value", &x))
			printf("    FALLBACK: hatchery's cold path p50 / QMP greeting p50 = %.3f\n", x);
	} else if (row_get_num(rows_find(rs, "qemu.boot"), "p50", &q)) {
		printf("    exec -> the guest's first byte p50 %s us\n", fmt(b[0], sizeof(b[0]), q));
		if (row_get_num(rows_find(rs, "qemu.greeting"), "p50", &x))
			printf("    (QEMU alone, exec -> QMP greeting of an empty paused VM, above:\n"
			       "    %s us)\n", fmt(b[1], sizeof(b[1]), x));
		if (row_get_num(rows_find(rs, COLD), "p50", &cold))
			printf("    hatchery's cold path (fork, jail, VM, guest boot, echo) p50 %s us\n"
			       "    = %.3fx QEMU's boot (target <= 0.1), QEMU %.1fx slower\n",
			       fmt(b[2], sizeof(b[2]), cold), cold / q, q / cold);
	}
	printf("\nPEER: mimobox (%s)\n", MIMOBOX_SOURCE);
	if (row_get_num(rows_find(rs, ECHO8), "p50", &x))
		printf("  microVM warm pool acquire + echo P50 %.0f us; hatchery's acquire + echo\n"
		       "  p50 %s us (booted, 8 idle) = %.3fx of it\n", MIMOBOX_ECHO_US,
		       fmt(b[0], sizeof(b[0]), x), x / MIMOBOX_ECHO_US);
	else
		printf("  microVM warm pool acquire + echo P50 %.0f us\n", MIMOBOX_ECHO_US);
	if (row_get_num(rows_find(rs, COLD), "p50", &x))
		printf("  microVM cold start (create, boot, echo, shutdown) P50 %.0f ms;\n"
		       "  hatchery's cold path p50 %s us = %.4fx of it\n", MIMOBOX_COLD_US / 1000,
		       fmt(b[1], sizeof(b[1]), x), x / MIMOBOX_COLD_US);
}

static void print_peer_restore(const struct rows *rs)
{
	char b[3][32];
	double q, a, p;
	const struct row *st = rows_find(rs, "qemu.restore.status");
	printf("\nPEER: QEMU restore (microvm, 64 MiB, -incoming from its migration file, [i])\n");
	if (!st) {
		printf("  not measured\n");
		return;
	}
	if (strcmp(row_get(st, "status"), "ok") != 0 ||
	    !row_get_num(rows_find(rs, QRESTORE), "p50", &q)) {
		printf("  did not run: %s\n", row_get(st, "error") ? row_get(st, "error")
								   : row_get(st, "status"));
		return;
	}
	printf("  exec -> query-status running p50 %s us\n", fmt(b[0], sizeof(b[0]), q));
	if (row_get_num(rows_find(rs, RLEASE), "p50", &a))
		printf("  hatchery restore on lease, acquire + first echo p50 %s us = %.4fx of it\n",
		       fmt(b[1], sizeof(b[1]), a), a / q);
	if (row_get_num(rows_find(rs, RPRE), "p50", &p))
		printf("  hatchery prerestore, acquire + first echo p50 %s us = %.4fx of it\n",
		       fmt(b[2], sizeof(b[2]), p), p / q);
}

/* ---- 14: Linux guests ------------------------------------------------------------ */

/* [m]: 15, Linux snapshots, in the same run as 14. */
static void print_linux_snap(const struct rows *rs, bool emu)
{
	char b[4][32];
	const struct row *pre = rows_find(rs, LXSNAP_PRE), *lease = rows_find(rs, LXSNAP_LEASE);
	const struct row *f = rows_find(rs, "linux.snapshot.file");
	const struct row *d = rows_find(rs, LXSNAP_DENSITY);
	double n = 0, nl = 0, x, y;
	row_get_num(pre, "n", &n);
	row_get_num(lease, "n", &nl);
	printf("\n[m] 15, Linux snapshots: the snapshot is a leased VM of the linux pool\n"
	       "    above after one Exec of true, saved (hatch_vm_save, what `hatchctl\n"
	       "    snapshot POOL FILE --exec true` does)");
	if (f && row_get_num(f, "mem_data_bytes", &x) && row_get_num(f, "st_size", &y))
		printf(":\n    %s KiB of non-zero guest pages stored, file %s KiB",
		       fmt(b[0], sizeof(b[0]), x / 1024), fmt(b[1], sizeof(b[1]), y / 1024));
	printf(".\n    Restore pools of it (kind = restore, the same memory and vCPUs, 4 idle,\n"
	       "    jailed); per cycle, untimed, the pool full and quiet; timed:\n"
	       "    hatch_acquire + hatch_vm_exec(\"true\") to its exit status (14's warm\n"
	       "    cycle): prerestore = true (%.0f cycles; target p50 <= 1 ms and <= 1.5x\n"
	       "    14's warm p50 on a KVM host) and prerestore = false, the restore and the\n"
	       "    agent's resume on the path (the child restores once leased, while\n"
	       "    the client has its acquire reply: the first Exec waits for it; %.0f\n"
	       "    cycles).\n", n, nl);
	const struct row *qs = rows_find(rs, "qemu.linux.incoming.status");
	if (rows_find(rs, QEMU_LINUX_IN))
		printf("  QEMU: the qemulinux command line with -serial null and QMP on stdio,\n"
		       "    booted to the agent's hello, migrated over QMP to exec:cat > FILE;\n"
		       "    then per run the same with -incoming \"exec:cat FILE\", timed from\n"
		       "    before fork/exec to the VmReply of VmRequest{exec [true]} sent on the\n"
		       "    agent's chardev once QEMU connects it; p50 %s us.\n"
		       "    Target: restore on lease p50 / this <= 0.05 on a KVM host.\n",
		       p50_of(rs, QEMU_LINUX_IN, b[2], sizeof(b[2])));
	else
		printf("  QEMU -incoming: not measured: %s\n",
		       qs && row_get(qs, "error") ? row_get(qs, "error") : "qemu did not run");
	if (d && row_get_num(d, "value", &x)) {
		double clones = 0, bound = 0;
		row_get_num(d, "clones", &clones);
		row_get_num(d, "bound_kib", &bound);
		printf("  density: a restore pool, prerestore = true, min_idle = max = %.0f (the\n"
		       "    issue's figure is 100 on a KVM host; fewer inside scripts/vm); all\n"
		       "    leased, Exec true in each, kept leased: sum over the clone processes\n"
		       "    of smaps_rollup Pss, against the bound = the snapshot's stored\n"
		       "    (non-zero) guest pages (its header's mem_data_size, shared by all\n"
		       "    clones) + the sum of the clones' Private_Dirty (what each wrote: its\n"
		       "    guest pages copied on write, its own heap and stacks): %.3f, of a\n"
		       "    bound of %s KiB (target <= 1.2).\n",
		       clones, x, fmt(b[3], sizeof(b[3]), bound));
	}
	if (emu)
		printf("  Emulation figures: ratios only.\n");
}

/* [n]: 16, the disk, in the same run as 14. */
static void print_linux_disk(const struct rows *rs, bool emu)
{
	static const char *const who[] = { "ours", "qsd" };
	static const char *const ops[] = { "randread", "randwrite" };
	static const unsigned qds[] = { 1, 32 };
	const struct row *any = NULL;
	char name[64], b[5][32];
	for (int w = 0; w < 2 && !any; w++) {
		snprintf(name, sizeof(name), "disk.%s.randread.qd1", who[w]);
		any = rows_find(rs, name);
	}
	printf("\n[n] 16, disk: 4 KiB random I/O on the guest's /dev/vda (O_DIRECT), by\n"
	       "    /bin/hatch-iobench through Exec, one lease of a linux pool of max = 1;\n"
	       "    the same frontend (hatchery's VMM) on the same image, two backends:\n"
	       "    ours (disk = IMG, disk_mode = rw: hatchery-vhost-blk, jailed as\n"
	       "    hatcheryd forks it) and qemu-storage-daemon's vhost-user-blk export\n"
	       "    (disk_socket). Backend CPU: utime + stime of its process (all threads)\n"
	       "    over the run, per I/O. Target: IOPS ours / qsd >= 1.0.\n");
	if (!any) {
		printf("  not measured (see NOT MEASURED below)\n");
		return;
	}
	printf("  %-6s %-10s %4s %9s %9s %9s %9s %10s\n", "", "op", "QD", "n", "IOPS",
	       "p50 us", "p99 us", "CPU us/IO");
	for (int w = 0; w < 2; w++)
		for (int i = 0; i < 2; i++)
			for (int k = 0; k < 2; k++) {
				snprintf(name, sizeof(name), "disk.%s.%s.qd%u", who[w], ops[i],
					 qds[k]);
				const struct row *r = rows_find(rs, name);
				double v[5] = { 0 };
				static const char *const key[5] = { "n", "value", "p50_us",
								    "p99_us", "cpu_us_per_io" };
				if (!r)
					continue;
				for (int j = 0; j < 5; j++)
					row_get_num(r, key[j], &v[j]);
				printf("  %-6s %-10s %4u %9.0f %9s %9s %9s %10s\n", who[w], ops[i],
				       qds[k], v[0], fmt(b[0], sizeof(b[0]), v[1]),
				       fmt(b[1], sizeof(b[1]), v[2]), fmt(b[2], sizeof(b[2]), v[3]),
				       fmt(b[3], sizeof(b[3]), v[4]));
			}
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 2; k++) {
			double x, y;
			snprintf(name, sizeof(name), "disk.iops_ratio.%s.qd%u", ops[i], qds[k]);
			if (!row_get_num(rows_find(rs, name), "value", &x))
				continue;
			snprintf(name, sizeof(name), "disk.cpu_ratio.%s.qd%u", ops[i], qds[k]);
			bool cpu = row_get_num(rows_find(rs, name), "value", &y);
			printf("  %s QD%u: IOPS ours / qsd %.3f%s; CPU per I/O ours / qsd %s\n",
			       ops[i], qds[k], x, emu ? " (emulation ratio)" : "",
			       cpu ? fmt(b[4], sizeof(b[4]), y) : "-");
		}
}

static void print_linux(const struct rows *rs, const struct bench_opts *o)
{
	bool any = false, emu = o->emulated;
	for (size_t i = 0; i < rs->n; i++) {
		if (report_is_linux_row(&rs->r[i])) {
			any = true;
			emu = emu || report_is_emulated_row(&rs->r[i]);
		}
	}
	printf("\nLINUX GUESTS (kind = linux: Debian's kernel, hatchery's initramfs, its\n"
	       "/init the agent; 14; restore pools of its snapshot: 15)\n");
	if (!any) {
		printf("  not measured (see NOT MEASURED below)\n");
		return;
	}
	if (emu)
		printf("  EMULATED: measured inside scripts/vm (QEMU's emulator, KVM nested in\n"
		       "  it) because this host's KVM cannot boot Linux (hatcheryd --probe-linux):\n"
		       "  emulation figures, 5-20x off a KVM host's. Ratios only; no target judged.\n");
	print_rows(rs, "us", "LINUX LATENCY (us)", true);
	print_rows(rs, "execs/s", "LINUX EXEC RATE (execs/s)", true);
	print_rows(rs, "MiB/s", "LINUX FILES (MiB/s)", true);
	print_rows(rs, "%", "LINUX HIT RATE (%)", true);
	print_rows(rs, "KiB", "LINUX MEMORY (KiB)", true);
	print_rows(rs, "x", "LINUX RATIOS (x)", true);

	char b[4][32];
	const struct row *w = rows_find(rs, LINUX_WARM), *c = rows_find(rs, LINUX_COLD);
	double n = 0, nc = 0, mem = 0, vcpus = 0, x;
	row_get_num(w, "n", &n);
	row_get_num(c, "n", &nc);
	row_get_num(w, "memory_mib", &mem);
	row_get_num(w, "vcpus", &vcpus);
	bool lxref = rows_find(rs, LINUX_ECHO_REF) != NULL;
	printf("\n  warm: a linux pool (%.0f MiB, %.0f vCPU, min_idle %s, max_spawning 1,\n"
	       "    jailed); before each cycle, untimed, the pool full and quiet (the\n"
	       "    last child reaped, its replacement booted); timed: hatch_acquire +\n"
	       "    hatch_vm_exec(\"true\") until its exit status is back; %.0f cycles.\n"
	       "    Ratio: over the kernel-less booted pool's acquire + echo (16 B) p50,\n"
	       "    %s us, measured %s.\n",
	       mem, vcpus, w && row_get(w, "min_idle") ? row_get(w, "min_idle") : "?", n,
	       p50_of(rs, lxref ? LINUX_ECHO_REF : ECHO8, b[0], sizeof(b[0])),
	       lxref ? "beside the Linux phases in the same VM run" : "in this run (7)");
	printf("  cold: every child leased in this phase (%.0f), from its VmInfoReply:\n"
	       "    ready_ns = the supervisor starting the spawn -> the child's Ready (fork,\n"
	       "    jail, VM, kernel boot, the agent's hello frame), each booted alone on a\n"
	       "    quiet pool; linux_boot_ns = kernel entry -> that hello.\n", nc);
	const struct row *qs = rows_find(rs, "qemu.linux.status");
	const struct row *q = rows_find(rs, QEMU_LINUX);
	row_get_num(q, "n", &x);
	if (q) {
		const char *cmdline = row_get(q, "cmdline");
		printf("  QEMU: qemu-system-x86_64 -M microvm,acpi=on -accel kvm -cpu host, the\n"
		       "    same vCPUs and memory, -kernel and -initrd the pool's vmlinuz and\n"
		       "    initramfs, -append the pool's command line\n"
		       "      %s\n"
		       "    -serial stdio, -device virtio-serial-device + virtconsole on a unix\n"
		       "    socket chardev (microvm's DSDT describes its virtio-mmio as LNRO0005,\n"
		       "    as hatchery's does: the agent's /dev/hvc0). From just before fork/exec\n"
		       "    to the agent's whole hello frame (VmReply{agent_ready}) on that\n"
		       "    socket, then QEMU is killed; %.0f boots, p50 %s us. The same agent\n"
		       "    milestone as hatchery's Ready.\n",
		       cmdline ? cmdline : "?", x, p50_of(rs, QEMU_LINUX, b[1], sizeof(b[1])));
	} else {
		printf("  QEMU: not measured: %s\n",
		       qs && row_get(qs, "error") ? row_get(qs, "error") : "qemu did not run");
	}
	if (row_get_num(rows_find(rs, LINUX_COLD_VS_QEMU), "value", &x))
		printf("  cold / QEMU: %.3f (target <= 0.5 on a KVM host)%s\n", x,
		       emu ? ", an emulation ratio" : "");
	row_get_num(rows_find(rs, "linux.exec_rate"), "n", &n);
	double rounds = 0;
	row_get_num(rows_find(rs, "linux.write_16mib"), "n", &rounds);
	printf("  throughput: one lease, %.0f sequential Execs of true (5 untimed first),\n"
	       "    execs/s over the whole run; then %.0f rounds of WriteFile of 16 MiB\n"
	       "    (a memfd of an xorshift stream) to the guest's /tmp (tmpfs) and\n"
	       "    ReadFile of it back, compared byte for byte, each timed alone.\n",
	       n, rounds);
	print_linux_snap(rs, emu);
	print_linux_disk(rs, emu);
}

static void print_peer(const struct rows *rs)
{
	print_peer_qmp(rs);
	print_peer_boot(rs);
	print_peer_restore(rs);
}

void report_print(const struct rows *rs, const struct machine *m,
		  const struct bench_opts *o)
{
	printf("hatchery bench%s: %s, %ld CPUs%s, Linux %s, %llu MiB, %s%s%s\n"
	       "load average at the end: %.2f %.2f %.2f (other work on the machine "
	       "shows in the tails)\n",
	       o->quick ? " (--quick)" : "", m->cpu, m->nproc,
	       m->hypervisor ? " (virtualised)" : "", m->kernel, m->mem_total_kib / 1024,
	       m->date, o->commit ? ", " : "", o->commit ? o->commit : "", m->load[0],
	       m->load[1], m->load[2]);
	if (o->emulated)
		printf("\nEMULATED: measured inside scripts/vm (QEMU's emulator with KVM nested\n"
		       "in it): every figure below is an emulation figure, 5-20x off a KVM\n"
		       "host's. Not results; no targets are judged. Ratios at most.\n");
	print_section(rs, "us", "LATENCY (us)");
	print_section(rs, "KiB", "MEMORY (KiB; per idle child)");
	print_section(rs, "children/s", "REFILL (children/s)");
	if (!o->emulated)
		print_targets(rs);
	print_peer(rs);
	print_linux(rs, o);
	bool header = false;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (!report_is_error_row(r))
			continue;
		if (!header)
			printf("\nNOT MEASURED\n");
		header = true;
		printf("  %s: %s\n", row_get(r, "phase") ? row_get(r, "phase") : "?",
		       row_get(r, "error") ? row_get(r, "error") : "?");
	}
}
