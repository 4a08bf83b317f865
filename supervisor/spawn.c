/* spawn.c - fork a child with clone3(CLONE_PIDFD): no exec, the supervisor
 * is the zygote. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "server.h"
#include "vmproc.h"

static pid_t clone3_pidfd(int *pidfd)
{
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_PIDFD;
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	args.exit_signal = SIGCHLD;
	/* Raw clone3 skips glibc's fork handlers. That is safe here: the
	 * supervisor is single-threaded, so no lock can be held across the
	 * fork, and the child never returns into supervisor code. */
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

int sup_spawn(struct sup_child *c, const struct vmp_kvm_host *kvm,
	      const char *kind)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	_cleanup_close_ int mine = sv[0];
	_cleanup_close_ int theirs = sv[1];

	const struct sup_pool_config *cfg = c->pool->cfg;
	struct vmp_spawn s = {
		.ctrl_fd = theirs,
		.kvm = kvm,
		.pool = cfg->name,
		.kind = kind,
		.child_id = c->id,
		.memory_mib = cfg->memory_mib,
		.vcpus = cfg->vcpus,
		.supervisor_pid = getpid(),
		.t_fork = c->t_fork,
	};
	int pidfd = -1;
	pid_t pid = clone3_pidfd(&pidfd);
	if (pid < 0 && errno == ENOSYS) {
		/* Kernels before 5.3: fork, then pidfd_open (5.3 too, so in
		 * practice this only helps under seccomp sandboxes that hide
		 * clone3). The child is unreaped, so the pid cannot be reused
		 * before pidfd_open. */
		pid = fork();
		if (pid > 0) {
			pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
			if (pidfd < 0) {
				int e = errno;
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				return -e;
			}
		}
	}
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(mine);
		vmp_child_main(&s); /* never returns */
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	int fl = fcntl(mine, F_GETFL);
	fcntl(mine, F_SETFL, fl | O_NONBLOCK);
	c->pid = pid;
	c->pidfd = pidfd;
	c->ctrl_fd = steal_fd(&mine);
	return 0;
}
