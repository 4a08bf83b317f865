/* report_json.c - the report as one JSON object in a file: the machine,
 * every measured row (with its targets and verdict unless --emulated), the
 * peers, and the phases that failed. See report.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void json_val(FILE *f, const char *s)
{
	if (is_number(s))
		fputs(s, f);
	else
		json_str(f, s);
}

static void json_row_fields(FILE *f, const struct row *r, const char *skip)
{
	bool first = true;
	for (size_t k = 0; k < r->n; k++) {
		if (skip && strcmp(r->key[k], skip) == 0)
			continue;
		fputs(first ? "" : ", ", f);
		first = false;
		json_str(f, r->key[k]);
		fputs(": ", f);
		json_val(f, r->val[k]);
	}
}

static void json_targets(FILE *f, const struct rows *rs, const char *name)
{
	bool any = false, all = true;
	for (size_t i = 0; i < report_ntargets; i++) {
		if (strcmp(report_targets[i].row, name) != 0)
			continue;
		if (report_targets[i].cmp == INFO)
			continue;
		struct verdict v = report_judge(rs, &report_targets[i]);
		any = true;
		all = all && v.have && v.pass;
	}
	if (!any)
		return;
	const char *op = NULL;
	for (int part = 0; part < 2; part++) {
		fprintf(f, ", \"%s\": {", part == 0 ? "target" : "ratio");
		bool first = true;
		for (size_t i = 0; i < report_ntargets; i++) {
			const struct target *t = &report_targets[i];
			if (strcmp(t->row, name) != 0 || t->cmp == INFO)
				continue;
			struct verdict v = report_judge(rs, t);
			op = t->cmp == AT_LEAST ? ">=" : "<=";
			fprintf(f, "%s\"%s\": ", first ? "" : ", ", t->stat);
			if (part == 0)
				fprintf(f, "%.10g", t->limit);
			else if (v.have)
				fprintf(f, "%.4f", v.ratio);
			else
				fputs("null", f);
			first = false;
		}
		fputc('}', f);
	}
	fprintf(f, ", \"target_op\": \"%s\", \"pass\": %s", op, all ? "true" : "false");
}

/* The members of "machine". */
static void json_machine(FILE *f, const struct machine *m, const struct bench_opts *o)
{
	fputs("\"cpu_model\": ", f);
	json_str(f, m->cpu);
	fprintf(f, ", \"nproc\": %ld, \"kernel\": ", m->nproc);
	json_str(f, m->kernel);
	fputs(", \"arch\": ", f);
	json_str(f, m->arch);
	fprintf(f, ", \"hypervisor\": %s, \"mem_total_mib\": %llu, "
		"\"loadavg\": [%.2f, %.2f, %.2f], \"date\": ",
		m->hypervisor ? "true" : "false", m->mem_total_kib / 1024, m->load[0],
		m->load[1], m->load[2]);
	json_str(f, m->date);
	if (o->commit) {
		fputs(", \"commit\": ", f);
		json_str(f, o->commit);
	}
	fprintf(f, ", \"quick\": %s, \"emulated\": %s",
		o->quick ? "true" : "false", o->emulated ? "true" : "false");
}

/* The elements of "results": each measured row once (the last run of it),
 * then the targets whose figure never arrived. */
static void json_results(FILE *f, const struct rows *rs, const struct bench_opts *o)
{
	bool first = true;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (report_is_error_row(r) || report_is_peer_row(r))
			continue;
		/* A row re-run later supersedes this one. */
		if (rows_find(rs, row_get(r, "name")) != r)
			continue;
		fprintf(f, "%s\n    {", first ? "" : ",");
		json_row_fields(f, r, NULL);
		if (!o->emulated && !report_is_emulated_row(r))
			json_targets(f, rs, row_get(r, "name"));
		fputc('}', f);
		first = false;
	}
	/* Targets whose figure never arrived. */
	for (size_t i = 0; i < report_ntargets; i++) {
		const char *n = report_targets[i].row;
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			dup = dup || strcmp(report_targets[j].row, n) == 0;
		if (dup || rows_find(rs, n))
			continue;
		fprintf(f, "%s\n    {\"name\": ", first ? "" : ",");
		json_str(f, n);
		fputs(", \"error\": \"not measured\"", f);
		if (!o->emulated)
			json_targets(f, rs, n);
		fputc('}', f);
		first = false;
	}
}

/* "qemu": QEMU's QMP figures, then "ratios" over hatchery's. */
static void json_peer_qemu(FILE *f, const struct rows *rs)
{
	const struct row *st = rows_find(rs, "qemu.status");
	if (!st) {
		fputs("\"qemu\": {\"status\": \"not measured\"}", f);
		return;
	}
	fputs("\"qemu\": {", f);
	json_row_fields(f, st, "name");
	static const char *const series[] = { "qemu.greeting", "qemu.caps", "qemu.exit" };
	static const char *const keys[] = { "greeting_us", "caps_us", "exit_us" };
	for (size_t k = 0; k < HATCH_ARRAY_SIZE(series); k++) {
		const struct row *r = rows_find(rs, series[k]);
		if (!r)
			continue;
		fprintf(f, ", \"%s\": {", keys[k]);
		json_row_fields(f, r, "name");
		fputc('}', f);
	}
	fputc('}', f);
	struct report_peer p = report_peer_figures(rs);
	if (!p.have)
		return;
	fputs(", \"ratios\": {", f);
	const char *sep = "";
	if (p.have_spawn) {
		fprintf(f, "\"greeting_over_spawn_to_ready\": %.4f", p.over_spawn);
		sep = ", ";
	}
	if (p.have_respawn) {
		fprintf(f, "%s\"greeting_over_release_to_idle\": %.4f", sep,
			p.over_respawn);
		sep = ", ";
	}
	if (p.have_acquire)
		fprintf(f, "%s\"greeting_over_acquire_ping\": %.4f", sep,
			p.over_acquire);
	fputc('}', f);
}

/* ", "qemu_boot": {...}, "qemu_restore": {...}": QEMU booting the tiny
 * guest, and restoring from its migration file. */
static void json_peer_qemu_boot_restore(FILE *f, const struct rows *rs)
{
	const struct row *bst = rows_find(rs, "qemu.boot.status");
	fputs(", \"qemu_boot\": {", f);
	if (bst) {
		json_row_fields(f, bst, "name");
		const struct row *r = rows_find(rs, "qemu.boot");
		if (r) {
			fputs(", \"boot_us\": {", f);
			json_row_fields(f, r, "name");
			fputc('}', f);
		}
	} else {
		fputs("\"status\": \"not measured\"", f);
	}
	fputc('}', f);
	const struct row *rst = rows_find(rs, "qemu.restore.status");
	fputs(", \"qemu_restore\": {", f);
	if (rst) {
		json_row_fields(f, rst, "name");
		const struct row *r = rows_find(rs, QRESTORE);
		if (r) {
			fputs(", \"running_us\": {", f);
			json_row_fields(f, r, "name");
			fputc('}', f);
		}
		double a, q;
		if (r && row_get_num(r, "p50", &q) && q > 0 &&
		    row_get_num(rows_find(rs, RLEASE), "p50", &a))
			fprintf(f, ", \"restore_on_lease_over_qemu\": %.4f", a / q);
	} else {
		fputs("\"status\": \"not measured\"", f);
	}
	fputc('}', f);
}

/* ", "KEY": {...}": the status row of one QEMU Linux peer and its two
 * series under keys[]. */
static void json_peer_linux(FILE *f, const struct rows *rs, const char *key,
			    const char *status, const char *const series[2],
			    const char *const keys[2])
{
	const struct row *st = rows_find(rs, status);
	fprintf(f, ", \"%s\": {", key);
	if (!st) {
		fputs("\"status\": \"not measured\"}", f);
		return;
	}
	json_row_fields(f, st, "name");
	for (size_t k = 0; k < 2; k++) {
		const struct row *r = rows_find(rs, series[k]);
		if (!r)
			continue;
		fprintf(f, ", \"%s\": {", keys[k]);
		json_row_fields(f, r, "name");
		fputc('}', f);
	}
	fputc('}', f);
}

/* ", "qemu_linux": {...}, "qemu_linux_incoming": {...}": QEMU booting the
 * linux pool's kernel and initramfs to the agent's hello (14), and -incoming
 * of that booted guest to its first Exec (15). */
static void json_peer_qemu_linux(FILE *f, const struct rows *rs)
{
	static const char *const boot[] = { QEMU_LINUX, "qemu.linux.connect" };
	static const char *const boot_keys[] = { "agent_ready_us", "chardev_connected_us" };
	json_peer_linux(f, rs, "qemu_linux", "qemu.linux.status", boot, boot_keys);
	static const char *const in[] = { QEMU_LINUX_IN, "qemu.linux.incoming.connect" };
	static const char *const in_keys[] = { "first_exec_us", "chardev_connected_us" };
	json_peer_linux(f, rs, "qemu_linux_incoming", "qemu.linux.incoming.status", in, in_keys);
}

/* ", "mimobox": {...}": the published figures, and ours over them. */
static void json_peer_mimobox(FILE *f, const struct rows *rs)
{
	fprintf(f, ", \"mimobox\": {\"acquire_echo_p50_us\": %.10g, \"cold_start_p50_us\": %.10g, "
		"\"source\": ", MIMOBOX_ECHO_US, MIMOBOX_COLD_US);
	json_str(f, MIMOBOX_SOURCE);
	double x;
	if (row_get_num(rows_find(rs, ECHO8), "p50", &x))
		fprintf(f, ", \"acquire_echo_over_mimobox\": %.4f", x / MIMOBOX_ECHO_US);
	if (row_get_num(rows_find(rs, COLD), "p50", &x))
		fprintf(f, ", \"cold_path_over_mimobox_cold_start\": %.6f", x / MIMOBOX_COLD_US);
	fputc('}', f);
}

int report_write_json(const char *path, const struct rows *rs, const struct machine *m,
		      const struct bench_opts *o, struct hatch_err *err)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return hatch_err_set(err, E(INTERNAL), errno, "open %s", tmp);
	fputs("{\n  \"machine\": {", f);
	json_machine(f, m, o);
	fputs("},\n  \"results\": [", f);
	json_results(f, rs, o);
	fputs("\n  ],\n  \"peer\": {", f);
	json_peer_qemu(f, rs);
	json_peer_qemu_boot_restore(f, rs);
	json_peer_qemu_linux(f, rs);
	json_peer_mimobox(f, rs);
	fputs("},\n  \"errors\": [", f);
	bool first = true;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (!report_is_error_row(r))
			continue;
		fprintf(f, "%s\n    {", first ? "" : ",");
		json_row_fields(f, r, "unit");
		fputc('}', f);
		first = false;
	}
	fputs(first ? "]\n}\n" : "\n  ]\n}\n", f);
	if (fclose(f) != 0) {
		int e = errno;
		unlink(tmp);
		return hatch_err_set(err, E(INTERNAL), e, "write %s", tmp);
	}
	if (rename(tmp, path) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "rename %s", tmp);
	return 0;
}
