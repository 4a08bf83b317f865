/* cleanup.h - scope-bound ownership for fds, heap and pids.
 *
 * Style borrowed from systemd/crun: a variable declared with one of these
 * attributes is released when it leaves scope, unless ownership is handed
 * out with steal_fd()/steal_ptr() first. Always initialise to -1 / NULL.
 */
#ifndef HATCHERY_CLEANUP_H
#define HATCHERY_CLEANUP_H

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* A child process held by its pidfd (we are its parent): SIGKILL, wait
 * for it so no zombie is left, close the pidfd. */
static inline void hatch_pidfd_killp(int *pidfd)
{
	if (*pidfd >= 0) {
		int saved = errno;
		syscall(SYS_pidfd_send_signal, *pidfd, SIGKILL, NULL, 0);
		while (waitid(P_PIDFD, (id_t)*pidfd, &(siginfo_t){ 0 }, WEXITED) < 0 &&
		       errno == EINTR)
			;
		close(*pidfd);
		errno = saved;
	}
	*pidfd = -1;
}

#define _cleanup_close_ __attribute__((cleanup(hatch_closep)))
#define _cleanup_pid_ __attribute__((cleanup(hatch_pidfd_killp)))
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
