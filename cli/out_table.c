/* out_table.c - hatchctl's text output: aligned tables, strings from the
 * daemon with control characters defused, ages. See hatchctl.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "hatchctl.h"

static bool is_ctl(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f;
}

/* Print a string from the daemon with control characters defused. */
void put_clean(const char *s)
{
	for (; *s; s++)
		putchar(is_ctl(*s) ? '?' : *s);
}

void format_age(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;
	if (ms < 1000)
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	else if (s < 60)
		snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	else
		snprintf(buf, len, "%llud%02lluh", (unsigned long long)(s / 86400),
			 (unsigned long long)(s / 3600 % 24));
}

void table_cell(struct table *t, const char *fmt, ...)
{
	if (t->oom)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * sizeof(*c));
		if (!c) {
			t->oom = true;
			return;
		}
		t->cells = c;
		t->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&t->cells[t->n], fmt, ap);
	va_end(ap);
	if (r < 0) {
		t->oom = true;
		return;
	}
	/* Strings come from the daemon; a newline or an escape sequence in,
	 * say, last_error must not break the table or drive the terminal. */
	for (char *p = t->cells[t->n]; *p; p++)
		if (is_ctl(*p))
			*p = '?';
	t->n++;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n = t->cap = 0;
}

/* Columns on screen, not bytes: headers carry "µs". Counts every byte that
 * is not a UTF-8 continuation byte. */
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static int table_print(struct table *t)
{
	if (t->oom)
		return -ENOMEM;
	if (t->n % t->ncols)
		return -EINVAL; /* a row left short: a bug here, not in the data */
	size_t *width = calloc(t->ncols, sizeof(*width));
	if (!width)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t w = display_width(t->cells[i]);
		if (w > width[i % t->ncols])
			width[i % t->ncols] = w;
	}
	for (size_t row = 0; row < t->n; row += t->ncols) {
		char **cells = t->cells + row;
		/* Stop after the last non-empty cell: no trailing blanks. */
		size_t ncols = t->ncols;
		while (ncols > 0 && !*cells[ncols - 1])
			ncols--;
		for (size_t col = 0; col < ncols; col++) {
			const char *s = cells[col];
			int pad = (int)(width[col] - display_width(s));
			bool last = col == ncols - 1;
			if (t->align[col] == 'r')
				printf("%*s%s", pad, "", s);
			else if (last)
				fputs(s, stdout);
			else
				printf("%s%*s", s, pad, "");
			if (!last)
				fputs("  ", stdout);
		}
		putchar('\n');
	}
	free(width);
	return 0;
}

int table_flush(struct table *t)
{
	int r = table_print(t);
	table_free(t);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", hx_prog, strerror(-r));
		return HX_FAILED;
	}
	return HX_OK;
}
