/* latency.c - log-linear latency histogram.
 *
 * Bucket layout: values below LAT_SUB have a bucket each (0..LAT_SUB-1,
 * exact). A larger value with its leading one at bit e (LAT_SUB_BITS <= e <
 * LAT_EXP) goes to bucket e * LAT_SUB + the LAT_SUB_BITS bits below that
 * leading one, so bucket e spans [2^e, 2^(e+1)) in LAT_SUB equal steps of
 * 2^(e - LAT_SUB_BITS). Groups 1..LAT_SUB_BITS-1 are never used (those values
 * are linear); keeping the group equal to the exponent makes the layout
 * readable and gives exactly the documented range, values below 2^LAT_EXP.
 * Anything at or above 2^LAT_EXP lands in the last bucket, whose upper edge is
 * taken as unbounded so a percentile that falls there reports the exact max.
 */
#include <string.h>

#include "latency.h"

_Static_assert(LAT_EXP > LAT_SUB_BITS && LAT_EXP < 64,
	       "exponent groups must cover the linear range and fit in u64");

#define US 1000ull
#define MS (1000ull * US)
#define S (1000ull * MS)
/* 1-2.5-5 steps from a hit's tens of microseconds to a Linux pool's boot
 * of seconds. */
const uint64_t lat_le_ns[LAT_LE_N] = {
	10 * US, 25 * US, 50 * US, 100 * US, 250 * US, 500 * US,
	1 * MS, 2500 * US, 5 * MS, 10 * MS, 25 * MS, 50 * MS, 100 * MS,
	250 * MS, 500 * MS, 1 * S, 2500 * MS, 5 * S, 10 * S, 30 * S,
};

static unsigned bucket_of(uint64_t v)
{
	if (v < LAT_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	if (e >= LAT_EXP)
		return LAT_BUCKETS - 1;
	unsigned sub = (unsigned)(v >> (e - LAT_SUB_BITS)) & (LAT_SUB - 1);
	return e * LAT_SUB + sub;
}

/* Largest value that maps to bucket b (inclusive upper edge). */
static uint64_t bucket_upper(unsigned b)
{
	if (b < LAT_SUB)
		return b;
	if (b == LAT_BUCKETS - 1)
		return UINT64_MAX; /* holds everything clamped from above */
	unsigned e = b / LAT_SUB, sub = b % LAT_SUB;
	uint64_t width = UINT64_C(1) << (e - LAT_SUB_BITS);
	return (UINT64_C(1) << e) + (uint64_t)(sub + 1) * width - 1;
}

void lat_init(struct lat_hist *h)
{
	memset(h, 0, sizeof(*h));
}

void lat_record(struct lat_hist *h, uint64_t ns)
{
	unsigned b = bucket_of(ns);
	/* Saturate rather than wrap: a wrapped bucket would make every
	 * percentile above it wrong; a saturated one only under-weights it,
	 * and lat_percentile() falls back to max if the walk runs short. */
	if (h->bucket[b] != UINT32_MAX)
		h->bucket[b]++;
	if (h->count == 0 || ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
	h->count++;
	if (__builtin_add_overflow(h->sum, ns, &h->sum))
		h->sum = UINT64_MAX;
	/* Twenty compares at most: cheaper than the syscalls around it. */
	for (unsigned i = 0; i < LAT_LE_N; i++) {
		if (ns <= lat_le_ns[i]) {
			h->le_band[i]++;
			break;
		}
	}
}

uint64_t lat_percentile(const struct lat_hist *h, double pct)
{
	if (h->count == 0)
		return 0;
	/* rank = ceil(pct/100 * count), clamped to [1, count]. pct * count is
	 * exact for integral pct and count < 2^53, so the division rounds to
	 * the exact quotient and e.g. p57 of 100 samples is rank 57, not 58.
	 * The comparisons are written so that NaN falls to rank 1. */
	double x = pct * (double)h->count / 100.0;
	uint64_t rank;
	if (!(x > 1.0))
		rank = 1;
	else if (x >= (double)h->count)
		rank = h->count;
	else {
		rank = (uint64_t)x;
		if ((double)rank < x)
			rank++;
	}

	uint64_t seen = 0;
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		seen += h->bucket[b];
		if (seen >= rank) {
			uint64_t v = bucket_upper(b);
			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max; /* only after a bucket saturated */
}
