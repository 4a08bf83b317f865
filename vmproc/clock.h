/* clock.h - vmproc's one clock: CLOCK_MONOTONIC in ns, for the phase
 * timings a child reports (VmInfoReply, ChildReady, Save/Restore stats).
 * Internal to vmproc/. */
#ifndef HATCHERY_VMP_CLOCK_H
#define HATCHERY_VMP_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t vmp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
