/* connect.c - how hatchctl reaches hatcheryd, and a VM through it. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchctl.h"

int hx_connect(const struct hx_ctx *cx, struct hatch_client **out,
	       struct hatch_err *err)
{
	if (hatch_connect(cx->socket, out, err) < 0)
		return -1;
	hatch_set_timeout(*out, cx->timeout_ms);
	return 0;
}

/* The VM calls in the library wait forever; a wedged child must not hang a
 * script any more than a wedged daemon may, so -t is put on the socket. */
int hx_vm_set_timeout(int vm_fd, unsigned ms, struct hatch_err *err)
{
	if (!ms)
		return 0;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };
	if (setsockopt(vm_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(vm_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return hatch_err_set(err, E(INTERNAL), errno,
				     "set a timeout on the VM socket");
	return 0;
}

int hx_lease_vm(const struct hx_ctx *cx, const char *pool, uint32_t deadline_ms,
		unsigned vm_timeout_ms, Hatchery__V1__AcquireReply **a,
		uint64_t *t_acquire, struct hatch_err *err)
{
	struct hatch_client *c = NULL;
	if (hx_connect(cx, &c, err) < 0)
		return -1;
	int vm_fd = -1;
	uint64_t t0 = hatch_now_ns();
	int r = hatch_acquire(c, pool, deadline_ms, &vm_fd, a, err);
	if (t_acquire)
		*t_acquire = hatch_now_ns() - t0;
	hatch_close(c);
	if (r < 0)
		return hatch_err_wrap(err, "acquire from pool %s", pool);
	if (hx_vm_set_timeout(vm_fd, vm_timeout_ms, err) < 0) {
		close(vm_fd);
		return -1;
	}
	return vm_fd;
}
