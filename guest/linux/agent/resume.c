/* resume.c - AgentResume: the host restored this guest from a snapshot,
 * maybe into many clones at once. Each clone would otherwise run on the
 * snapshot's wall clock and, worse, hand out the same /dev/urandom bytes
 * as its siblings: the kernel's CRNG state was in the snapshot. So the
 * host sends its time and fresh entropy, and the agent applies them:
 *
 *   1. clock_settime(CLOCK_REALTIME), unless realtime_ns is 0;
 *   2. RNDADDENTROPY: the bytes into the input pool, credited 8 bits a byte;
 *   3. RNDRESEEDCRNG: the base CRNG reseeds from the pool now, not at its
 *      next scheduled reseed; the per-CPU CRNGs see the new generation
 *      and rekey from it on their next use (Linux 6.1 random.c).
 *
 * The first step that fails ends the request: AGENT_ERROR with its errno,
 * and the steps after it are not taken. Steps 2-3 need CAP_SYS_ADMIN.
 *
 * Test mode (not PID 1, --channel-fd) runs on the host, as a host process:
 * it never sets the clock -- there the clock is the host's -- and says so
 * in agent_ready.clock_set (false) and one log line. It does add the
 * entropy and reseed: more entropy in the host's pool harms nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define AGENT_ERROR HATCHERY__V1__ERROR_CODE__AGENT_ERROR

/* struct rand_pool_info ends in a flexible array of __u32: the bytes go
 * right after its two ints, in storage of our own. */
union pool {
	struct rand_pool_info info;
	uint32_t words[2 + AGENT_RESUME_ENTROPY_MAX / sizeof(uint32_t)];
};
_Static_assert(offsetof(struct rand_pool_info, buf) == 2 * sizeof(uint32_t),
	       "rand_pool_info: buf follows entropy_count and buf_size");

static int reseed(const ProtobufCBinaryData *ent, struct hatch_err *e)
{
	union pool p;
	memset(&p, 0, sizeof(p));
	/* frame.c bounded the length to 32..256. */
	p.info.entropy_count = (int)(ent->len * 8);
	p.info.buf_size = (int)ent->len;
	memcpy(&p.words[2], ent->data, ent->len);
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return hatch_err_set(e, AGENT_ERROR, errno, "agent_resume: open /dev/urandom");
	int r = 0;
	if (ioctl(fd, RNDADDENTROPY, &p.info) < 0)
		r = hatch_err_set(e, AGENT_ERROR, errno,
				  "agent_resume: RNDADDENTROPY of %zu bytes", ent->len);
	else if (ioctl(fd, RNDRESEEDCRNG) < 0)
		r = hatch_err_set(e, AGENT_ERROR, errno, "agent_resume: RNDRESEEDCRNG");
	close(fd);
	return r;
}

void agent_resume(struct agent *a, uint64_t id, const Hatchery__V1__VmAgentResume *rs)
{
	struct hatch_err e = { 0 };
	bool clock_set = false;
	if (rs->realtime_ns && !a->pid1) {
		agent_log("agent_resume: test mode: the clock is the host's, not set "
			  "(realtime_ns %llu ignored)", (unsigned long long)rs->realtime_ns);
	} else if (rs->realtime_ns) {
		struct timespec ts = {
			.tv_sec = (time_t)(rs->realtime_ns / 1000000000ull),
			.tv_nsec = (long)(rs->realtime_ns % 1000000000ull),
		};
		if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
			hatch_err_set(&e, AGENT_ERROR, errno, "agent_resume: clock_settime");
			chan_send_error(a, id, &e);
			return;
		}
		clock_set = true;
	}
	if (reseed(&rs->entropy, &e) < 0) {
		chan_send_error(a, id, &e);
		return;
	}
	agent_send_ready(a, id, clock_set);
}
