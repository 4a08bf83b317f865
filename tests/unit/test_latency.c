/* test_latency.c - the log-linear histogram against exact answers. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "latency.h"

/* Within 1/LAT_SUB of `want`, in integers so no rounding hides an error. */
static bool within_sub(uint64_t got, uint64_t want)
{
	uint64_t d = got > want ? got - want : want - got;
	return d * LAT_SUB <= want;
}

static struct lat_hist *new_hist(void)
{
	/* On the heap and alone, so ASan sees any write past bucket[]. */
	struct lat_hist *h = malloc(sizeof(*h));
	cr_assert_not_null(h);
	memset(h, 0xa5, sizeof(*h)); /* lat_init must not rely on zeroed memory */
	lat_init(h);
	return h;
}

Test(latency, empty_is_zero)
{
	struct lat_hist *h = new_hist();
	cr_assert_eq(h->count, 0);
	cr_assert_eq(lat_percentile(h, 50), 0);
	cr_assert_eq(lat_percentile(h, 99.9), 0);
	cr_assert_eq(lat_percentile(h, 100), 0);
	free(h);
}

Test(latency, single_value_every_percentile)
{
	static const uint64_t vals[] = { 0, 1, 15, 16, 17, 1000, 12345,
					 987654321, (UINT64_C(1) << 44) - 1 };
	static const double pcts[] = { 0.001, 1, 25, 50, 90, 99, 99.99, 100 };
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		struct lat_hist *h = new_hist();
		lat_record(h, vals[i]);
		cr_assert_eq(h->count, 1);
		for (size_t j = 0; j < sizeof(pcts) / sizeof(pcts[0]); j++)
			cr_assert_eq(lat_percentile(h, pcts[j]), vals[i],
				     "value %" PRIu64 " p%g: got %" PRIu64, vals[i],
				     pcts[j], lat_percentile(h, pcts[j]));
		free(h);
	}
}

Test(latency, uniform_1_to_1000)
{
	struct lat_hist *h = new_hist();
	for (uint64_t v = 1; v <= 1000; v++)
		lat_record(h, v);
	cr_assert_eq(h->count, 1000);
	cr_assert_eq(h->min, 1);
	cr_assert_eq(h->max, 1000);
	uint64_t p50 = lat_percentile(h, 50);
	uint64_t p99 = lat_percentile(h, 99);
	cr_assert(within_sub(p50, 500), "p50 = %" PRIu64, p50);
	cr_assert(within_sub(p99, 990), "p99 = %" PRIu64, p99);
	cr_assert_eq(lat_percentile(h, 100), 1000);
	free(h);
}

/* Below LAT_SUB every value has its own bucket: percentiles are exact. */
Test(latency, small_values_exact)
{
	struct lat_hist *h = new_hist();
	for (uint64_t v = 0; v < LAT_SUB; v++)
		lat_record(h, v);
	for (unsigned i = 0; i < LAT_SUB; i++) {
		/* (i+1)/LAT_SUB of the samples are <= i; 100/16 is exact. */
		double pct = (i + 1) * 100.0 / LAT_SUB;
		cr_assert_eq(lat_percentile(h, pct), i, "p%g: got %" PRIu64,
			     pct, lat_percentile(h, pct));
	}
	free(h);
}

/* Above LAT_SUB a percentile is its bucket's upper edge: 992..1023 share a
 * bucket, so the lowest third of {992, 1023, 2000} reports 1023. */
Test(latency, reports_bucket_upper_edge)
{
	struct lat_hist *h = new_hist();
	lat_record(h, 992);
	lat_record(h, 1023);
	lat_record(h, 2000);
	cr_assert_eq(lat_percentile(h, 33), 1023);
	cr_assert_eq(lat_percentile(h, 66), 1023);
	cr_assert_eq(lat_percentile(h, 100), 2000);
	free(h);
}

Test(latency, huge_values_clamp_max_exact)
{
	struct lat_hist *h = new_hist();
	lat_record(h, 99); /* bucket 96..99: exact at its edge */
	lat_record(h, UINT64_C(1) << 44); /* the first value out of range */
	lat_record(h, UINT64_MAX);
	cr_assert_eq(h->count, 3);
	cr_assert_eq(h->max, UINT64_MAX);
	cr_assert_eq(lat_percentile(h, 100), UINT64_MAX);
	cr_assert_eq(lat_percentile(h, 33), 99);
	/* 2^44 is past the range, so it shares the last bucket with
	 * UINT64_MAX: its resolution is lost, reported as the max. */
	cr_assert_eq(lat_percentile(h, 66), UINT64_MAX);
	free(h);

	/* Just below the range still has full resolution. */
	h = new_hist();
	uint64_t top = (UINT64_C(1) << 44) - 1;
	lat_record(h, top - (UINT64_C(1) << 39)); /* the bucket below top's */
	lat_record(h, UINT64_MAX);
	uint64_t p50 = lat_percentile(h, 50);
	cr_assert_eq(p50, top - (UINT64_C(1) << 39), "p50 = %" PRIu64, p50);
	free(h);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

Test(latency, random_matches_sorted_ground_truth)
{
	/* A prime count: k * N / 1000 is never an integer for 0 < k < 1000,
	 * so the rank the histogram computes from a (k/10.0)% in floating
	 * point cannot differ by one from the exact ceiling used below. */
	enum { N = 9973 };
	uint64_t *v = malloc(N * sizeof(*v));
	cr_assert_not_null(v);
	struct lat_hist *h = new_hist();
	uint64_t seed = 0x9e3779b97f4a7c15u;
	for (size_t i = 0; i < N; i++) {
		/* log-uniform over 0..2^40 so every bucket shape is hit */
		uint64_t r = xorshift64(&seed);
		unsigned bits = (unsigned)(r % 41);
		v[i] = bits ? xorshift64(&seed) >> (64 - bits) : 0;
		lat_record(h, v[i]);
	}
	qsort(v, N, sizeof(*v), cmp_u64);
	cr_assert_eq(h->min, v[0]);
	cr_assert_eq(h->max, v[N - 1]);

	uint64_t prev = 0;
	for (uint64_t k = 1; k <= 1000; k++) {
		double pct = (double)k / 10.0;
		uint64_t rank = (k * N + 999) / 1000; /* ceil(pct/100 * N) */
		uint64_t truth = v[rank - 1];
		uint64_t got = lat_percentile(h, pct);
		cr_assert_geq(got, prev, "p%g = %" PRIu64 " < previous %" PRIu64,
			      pct, got, prev);
		cr_assert_geq(got, truth, "p%g = %" PRIu64 " below truth %" PRIu64,
			      pct, got, truth);
		cr_assert(within_sub(got, truth),
			  "p%g = %" PRIu64 ", truth %" PRIu64, pct, got, truth);
		prev = got;
	}
	cr_assert_eq(lat_percentile(h, 100), v[N - 1]);
	free(h);
	free(v);
}

/* Lower edge of the j-th bucket above the linear ones: every sample in a
 * bucket of its own, so a rank off by one changes the answer. */
static uint64_t distinct_bucket_value(unsigned j)
{
	unsigned b = LAT_SUB * LAT_SUB_BITS + j; /* first log bucket + j */
	unsigned e = b / LAT_SUB, sub = b % LAT_SUB;
	return (UINT64_C(1) << e) + ((uint64_t)sub << (e - LAT_SUB_BITS));
}

/* Integral percentiles pick exactly the ceil(pct * count / 100)-th sample,
 * including the counts where pct/100 * count in floating point lands a hair
 * above an integer (p7 of 100 samples is the 7th, not the 8th). */
Test(latency, integral_percentiles_exact_rank)
{
	struct lat_hist *h = new_hist();
	for (unsigned count = 1; count <= 200; count++) {
		lat_record(h, distinct_bucket_value(count - 1));
		for (unsigned pct = 1; pct <= 100; pct++) {
			unsigned rank = (pct * count + 99) / 100;
			uint64_t lo = distinct_bucket_value(rank - 1);
			uint64_t got = lat_percentile(h, pct);
			cr_assert(got >= lo && within_sub(got, lo),
				  "p%u of %u: got %" PRIu64 ", want bucket of %" PRIu64,
				  pct, count, got, lo);
			if (rank < count)
				cr_assert_lt(got, distinct_bucket_value(rank),
					     "p%u of %u: got %" PRIu64 ", rank too high",
					     pct, count, got);
		}
	}
	free(h);
}

/* The decimal bands: a sample on an edge counts at that edge, one above
 * it at the next; past the last edge only count and sum see it. */
Test(latency, le_bands_are_exact)
{
	struct lat_hist *h = new_hist();
	for (unsigned i = 1; i < LAT_LE_N; i++)
		cr_assert_lt(lat_le_ns[i - 1], lat_le_ns[i], "edges ascend");
	lat_record(h, 0);
	lat_record(h, lat_le_ns[0]);
	lat_record(h, lat_le_ns[0] + 1);
	lat_record(h, lat_le_ns[LAT_LE_N - 1]);
	lat_record(h, lat_le_ns[LAT_LE_N - 1] + 1);
	cr_assert_eq(h->le_band[0], 2);
	cr_assert_eq(h->le_band[1], 1);
	cr_assert_eq(h->le_band[LAT_LE_N - 1], 1);
	uint64_t in_bands = 0;
	for (unsigned i = 0; i < LAT_LE_N; i++)
		in_bands += h->le_band[i];
	cr_assert_eq(in_bands, 4);
	cr_assert_eq(h->count, 5);
	cr_assert_eq(h->sum, 2 * lat_le_ns[0] + 1 + 2 * lat_le_ns[LAT_LE_N - 1] + 1);
	lat_record(h, UINT64_MAX);
	cr_assert_eq(h->sum, UINT64_MAX, "the sum saturates");
	free(h);
}
