/* clock.h - hatchery's one clock: CLOCK_MONOTONIC in ns, for the timings
 * the supervisor, the children, hatchctl and the benchmarks take and
 * report. Header-only (inline): every folder may use it. */
#ifndef HATCHERY_CLOCK_H
#define HATCHERY_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t hatch_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
