/* report.c - `hatch-bench report`: the figures beside their targets, a
 * table on stdout and one JSON object in a file. How the files of the
 * report divide the work, and what a verdict means: report.h. */
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

static void machine_probe(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->cpu, sizeof(m->cpu), "unknown");
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (f) {
		char *line = NULL;
		size_t cap = 0;
		bool got_model = false;
		while (getline(&line, &cap, f) >= 0) {
			char *colon = strchr(line, ':');
			if (!colon)
				continue;
			char *v = colon + 1;
			while (*v == ' ')
				v++;
			v[strcspn(v, "\n")] = '\0';
			if (!got_model && strncmp(line, "model name", 10) == 0) {
				snprintf(m->cpu, sizeof(m->cpu), "%s", v);
				got_model = true;
			} else if (strncmp(line, "flags", 5) == 0 && strstr(v, "hypervisor")) {
				m->hypervisor = true;
			}
		}
		free(line);
		fclose(f);
	}
	m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
	struct utsname u;
	if (uname(&u) == 0) {
		snprintf(m->kernel, sizeof(m->kernel), "%s", u.release);
		snprintf(m->arch, sizeof(m->arch), "%s", u.machine);
	}
	f = fopen("/proc/meminfo", "re");
	if (f) {
		char line[256];
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "MemTotal: %llu kB", &m->mem_total_kib) == 1)
				break;
		fclose(f);
	}
	f = fopen("/proc/loadavg", "re");
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &m->load[0], &m->load[1], &m->load[2]) != 3)
			m->load[0] = m->load[1] = m->load[2] = 0;
		fclose(f);
	}
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int bench_report(const struct bench_opts *o, struct hatch_err *err)
{
	struct rows rs = { 0 };
	if (rows_load(o->rows, &rs, err) < 0) {
		rows_free(&rs);
		return -1;
	}
	report_derive(&rs);
	struct machine m;
	machine_probe(&m);

	/* The file first: a reader of the table that goes away (a pager, a
	 * `| head`) must not cost the JSON. */
	int ret = o->json ? report_write_json(o->json, &rs, &m, o, err) : 0;
	report_print(&rs, &m, o);
	if (o->json && ret == 0)
		printf("\nJSON: %s\n", o->json);
	rows_free(&rs);
	return ret;
}
