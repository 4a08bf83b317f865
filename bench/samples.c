/* samples.c - sample arrays and nearest-rank percentiles. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "bench.h"

int samples_add(struct samples *s, uint64_t v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
	s->sorted = false;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static void sort(struct samples *s)
{
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
		s->sorted = true;
	}
}

uint64_t samples_pct(struct samples *s, double pct)
{
	if (s->n == 0)
		return 0;
	sort(s);
	/* rank = ceil(pct/100 * n) in 1..n; the same rule as the daemon's
	 * histogram, so the two sets of figures mean the same thing. */
	double x = ceil(pct * (double)s->n / 100.0);
	size_t rank = x < 1.0 ? 1 : x > (double)s->n ? s->n : (size_t)x;
	return s->v[rank - 1];
}

uint64_t samples_max(struct samples *s)
{
	if (s->n == 0)
		return 0;
	sort(s);
	return s->v[s->n - 1];
}

double samples_mean(const struct samples *s)
{
	if (s->n == 0)
		return 0;
	double sum = 0;
	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->v[i];
	return sum / (double)s->n;
}

void samples_free(struct samples *s)
{
	free(s->v);
	*s = (struct samples){ 0 };
}
