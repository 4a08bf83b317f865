/* disk.c - a linux pool's disk backends. See disk.h. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "backend_child.h"
#include "vmproc.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Its address space beyond its own: the guest memory it maps (the child's
 * memory_mib) and the bounce buffer. */
#define BACKEND_AS_EXTRA(mib) (((uint64_t)(mib) << 20) + (64ull << 20))

int sup_disk_layer_open(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd;
	/* A file system without O_TMPFILE (overlayfs before 6.6, 9p): a
	 * name for an instant, unlinked before anyone else could open it
	 * (0600, a name nobody can guess). */
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/.hatchery-layer.XXXXXX", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0 && unlink(path) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int sup_disk_start(struct sup_child *c, const struct sup_server_opts *o, uid_t uid,
		   gid_t gid, int *vm_end, struct hatch_err *err)
{
	const struct sup_pool_config *cfg = c->pool->cfg;
	bool rw = cfg->disk_mode == SUP_DISK_RW;
	_cleanup_close_ int image = open(cfg->disk, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (image < 0)
		return hatch_err_set(err, E(FAILED_PRECONDITION), errno, "disk %s", cfg->disk);
	_cleanup_close_ int layer = -1;
	if (cfg->disk_mode == SUP_DISK_OVERLAY) {
		/* Unlinked from birth: it goes when the backend does. */
		layer = sup_disk_layer_open(cfg->overlay_dir);
		if (layer < 0)
			return hatch_err_set(err, E(FAILED_PRECONDITION), errno,
					     "overlay layer for disk %s in overlay_dir %s",
					     cfg->disk, cfg->overlay_dir);
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "socketpair (disk)");
	_cleanup_close_ int mine = sv[0];
	_cleanup_close_ int theirs = sv[1];
	struct vmp_jail_config jail = {
		.uid = uid,
		.gid = gid,
		.nofile = VHU_BACKEND_NOFILE,
		.as_extra = BACKEND_AS_EXTRA(cfg->memory_mib),
		.filter = &o->filters[VMP_FILTER_VHOST_BLK][cfg->seccomp],
		.flags = 0,
		.report_fd = -1,
		.parent_pidfd = o->self_pidfd,
	};
	struct vhu_backend_spawn bs = {
		.conn_fd = theirs,
		.image_fd = image,
		.overlay_fd = layer,
		.read_only = cfg->disk_mode == SUP_DISK_RO,
		.jail = o->no_jail ? NULL : &jail,
	};
	_cleanup_pid_ int pidfd = -1;
	pid_t pid = vmp_jail_clone3(o->no_jail ? VMP_JAIL_NONE : VMP_JAIL_ROOT, -1, &pidfd);
	if (pid < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "clone3 (disk backend)");
	if (pid == 0) {
		close(mine);
		vhu_backend_child_main(&bs); /* never returns */
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	c->disk_pid = pid;
	c->disk_pidfd = steal_fd(&pidfd);
	*vm_end = steal_fd(&mine);
	return 0;
}

int sup_disk_connect(const struct sup_pool_config *cfg, int *vm_end, struct hatch_err *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(cfg->disk_socket) >= sizeof(a.sun_path))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "disk_socket %s: too long",
				     cfg->disk_socket);
	memcpy(a.sun_path, cfg->disk_socket, strlen(cfg->disk_socket) + 1);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "socket (disk_socket)");
	/* A local listener answers at once or refuses: no timeout needed. */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return hatch_err_set(err, E(FAILED_PRECONDITION), errno,
				     "disk_socket %s: connect to the external backend",
				     cfg->disk_socket);
	*vm_end = steal_fd(&fd);
	return 0;
}

/* How it ended, for the log and the pool's error. */
static void exit_message(const struct sup_child *c, const siginfo_t *si, char *msg,
			 size_t cap)
{
	if (si->si_code == CLD_EXITED)
		snprintf(msg, cap, "disk backend %d of child %d exited with status %d",
			 si->si_pid, c->pid, si->si_status);
	else
		snprintf(msg, cap, "disk backend %d of child %d killed by signal %d (%s)%s",
			 si->si_pid, c->pid, si->si_status, strsignal(si->si_status),
			 si->si_status == SIGSYS ? ": a syscall off its seccomp allowlist" : "");
}

bool sup_disk_reap(struct sup_child *c, char *msg, size_t cap)
{
	siginfo_t si = { 0 };
	if (waitid(P_PIDFD, (id_t)c->disk_pidfd, &si, WEXITED | WNOHANG) < 0) {
		snprintf(msg, cap, "disk backend %d of child %d: waitid: %s", c->disk_pid, c->pid,
			 strerror(errno));
	} else if (si.si_pid == 0) {
		return false;
	} else {
		exit_message(c, &si, msg, cap);
	}
	hatch_closep(&c->disk_pidfd);
	return true;
}

void sup_disk_stop(struct sup_child *c)
{
	if (c->disk_pidfd < 0)
		return;
	syscall(SYS_pidfd_send_signal, c->disk_pidfd, SIGKILL, NULL, 0);
	siginfo_t si;
	while (waitid(P_PIDFD, (id_t)c->disk_pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	hatch_closep(&c->disk_pidfd);
}
