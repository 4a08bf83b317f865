/* cleanup.h - scope-bound ownership for fds, heap and pids.
 *
 * Style borrowed from systemd/crun: a variable declared with one of these
 * attributes is released when it leaves scope, unless ownership is handed
 * out with steal_fd()/steal_ptr() first. Always initialise to -1 / NULL.
 */
#ifndef HATCHERY_CLEANUP_H
#define HATCHERY_CLEANUP_H

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static inline void hatch_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno; /* close() must not clobber the caller's errno */
		close(*fd);
		errno = saved;
	}
	*fd = -1;
}

static inline void hatch_freep(void *p)
{
	free(*(void **)p);
}

#define _cleanup_close_ __attribute__((cleanup(hatch_closep)))
#define _cleanup_free_ __attribute__((cleanup(hatch_freep)))

/* Hand an fd out of a _cleanup_close_ variable. */
static inline int steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/* Hand a pointer out of a _cleanup_ variable; type-checked by __typeof__. */
#define steal_ptr(pp)                                                          \
	({                                                                     \
		__typeof__(*(pp)) _p = *(pp);                                  \
		*(pp) = NULL;                                                  \
		_p;                                                            \
	})

#define HATCH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
