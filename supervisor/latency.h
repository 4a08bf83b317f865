/* latency.h - fixed-size log-linear latency histogram (HDR-style).
 *
 * Pure code. Recording is O(1) and allocation-free, so it sits on the
 * acquire hot path. Values are nanoseconds; buckets are powers of two split
 * into LAT_SUB linear sub-buckets, so any reported percentile is within
 * 1/LAT_SUB (6.25%) of a recorded value, and never above the exact max.
 */
#ifndef HATCHERY_SUP_LATENCY_H
#define HATCHERY_SUP_LATENCY_H

#include <stdint.h>

#define LAT_SUB_BITS 4
#define LAT_SUB (1u << LAT_SUB_BITS)
#define LAT_EXP 44 /* values up to 2^44 ns (~4.9 hours); larger clamp */
#define LAT_BUCKETS (LAT_EXP * LAT_SUB)

/* Coarse bands with decimal edges, counted exactly beside the log-linear
 * buckets: a Prometheus histogram needs "samples <= 1 ms" to mean exactly
 * that, and no log-linear edge falls on a decimal one. lat_le_ns[] is
 * ascending; band i holds the samples in (lat_le_ns[i-1], lat_le_ns[i]],
 * and samples above the last edge are only in count. */
#define LAT_LE_N 20
extern const uint64_t lat_le_ns[LAT_LE_N];

struct lat_hist {
	uint64_t count;
	uint64_t max;
	uint64_t min;
	uint64_t sum;               /* of every sample, saturating at UINT64_MAX */
	uint64_t le_band[LAT_LE_N]; /* per band, not cumulative */
	uint32_t bucket[LAT_BUCKETS];
};

void lat_init(struct lat_hist *h);
void lat_record(struct lat_hist *h, uint64_t ns);

/* The value below which `pct` percent (0 < pct <= 100) of samples fall,
 * reported as the upper edge of its bucket clamped to [min, max].
 * 0 when the histogram is empty. */
uint64_t lat_percentile(const struct lat_hist *h, double pct);

#endif
