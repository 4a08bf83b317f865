/* backend_child.c - the backend's process: fd hygiene, the disk on its
 * fds, the jail, one connection served. See backend_child.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"
#include "backend_child.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* The first fd after the fixed ones: everything from here up is closed. */
#define FIRST_FREE_FD (VHU_CHILD_PIDFD + 1)

/* Keep only what the struct names, at fixed numbers; /dev/null on stdin
 * and stdout; stderr stays (the daemon's log). Everything else we
 * inherited from the supervisor (its listening socket, other children's
 * control sockets, clients' connections, other disks' images) is closed
 * before the disk is touched. */
static int fd_hygiene(const struct vhu_backend_spawn *s, struct hatch_err *err)
{
	const struct vmp_jail_config *j = s->jail;
	int src[FIRST_FREE_FD] = { -1, -1, -1, -1, -1, -1, -1, -1 };
	src[VHU_CHILD_CONN_FD] = s->conn_fd;
	src[VHU_CHILD_IMAGE_FD] = s->image_fd;
	src[VHU_CHILD_OVERLAY_FD] = s->overlay_fd;
	src[VHU_CHILD_REPORT_FD] = j ? j->report_fd : -1;
	src[VHU_CHILD_PIDFD] = j ? j->parent_pidfd : -1;
	if (s->conn_fd < 0 || s->image_fd < 0)
		return hatch_err_set(err, E(INTERNAL), EBADF, "no connection or no image fd");
	/* Out of the way first, so no target number is still some source. */
	int tmp[FIRST_FREE_FD];
	for (int i = VHU_CHILD_CONN_FD; i < FIRST_FREE_FD; i++) {
		tmp[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, 64) : -1;
		if (src[i] >= 0 && tmp[i] < 0)
			return hatch_err_set(err, E(INTERNAL), errno, "fd %d", src[i]);
	}
	/* Before the jail, where open is still possible; no exec follows. */
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "/dev/null on stdin/stdout");
	for (int i = VHU_CHILD_CONN_FD; i < FIRST_FREE_FD; i++) {
		if (tmp[i] >= 0 ? dup3(tmp[i], i, O_CLOEXEC) < 0 : close(i) < 0 && errno != EBADF)
			return hatch_err_set(err, E(INTERNAL), errno, "fd %d", i);
	}
	if (syscall(SYS_close_range, FIRST_FREE_FD, ~0u, 0) < 0) {
		/* close_range is 5.9+; the slow way. */
		for (int fd = FIRST_FREE_FD; fd < 65536; fd++)
			close(fd);
	}
	return 0;
}

/* GET_ID's serial: the image's file name, read before /proc is gone. */
static void image_name(char *name, size_t len)
{
	char path[64], target[256];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", VHU_CHILD_IMAGE_FD);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0) {
		snprintf(name, len, "hatchery");
		return;
	}
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	snprintf(name, len, "%.*s", (int)len - 1, base ? base + 1 : target);
}

/* An rw disk on an image fd opened read-only would fail every write with
 * IOERR: say so at once instead. */
static int check_access(const struct vhu_backend_spawn *s, struct hatch_err *err)
{
	int fl = fcntl(VHU_CHILD_IMAGE_FD, F_GETFL);
	if (fl < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "image fd");
	if (!s->read_only && s->overlay_fd < 0 && (fl & O_ACCMODE) == O_RDONLY)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "a writable disk on an image fd opened read-only");
	return 0;
}

int vhu_backend_child_enter(const struct vhu_backend_spawn *s, struct vhu_blk *blk,
			    struct vmp_jail_info *info, struct hatch_err *err)
{
	/* Die with the supervisor (the jail arms it again after the uid
	 * change, which clears it). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "PR_SET_PDEATHSIG");
	/* The supervisor blocks the signals it reads from a signalfd: a
	 * backend must not inherit that mask. A call "eventfd" that is a
	 * pipe with no reader is EPIPE, not a death. */
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	if (fd_hygiene(s, err) < 0)
		return -1;
	prctl(PR_SET_NAME, "vhost-blk");
	if (check_access(s, err) < 0)
		return -1;
	char name[64];
	image_name(name, sizeof(name));
	bool overlay = s->overlay_fd >= 0;
	/* Takes the fixed fds: the layer is sized and the bitmap allocated
	 * here, before RLIMIT_FSIZE and RLIMIT_AS. */
	if (vhu_blk_open_fd(blk, VHU_CHILD_IMAGE_FD, overlay ? VHU_CHILD_OVERLAY_FD : -1,
			    s->read_only, name, err) < 0)
		return hatch_err_wrap(err, "disk");
	if (!s->jail)
		return 0;
	struct vmp_jail_config cfg = *s->jail;
	cfg.nproc = VMP_JAIL_NPROC_RUNNING;
	cfg.fsize = s->read_only ? 0 : vhu_blk_bytes(blk);
	if (!cfg.nofile)
		cfg.nofile = VHU_BACKEND_NOFILE;
	cfg.report_fd = s->jail->report_fd >= 0 ? VHU_CHILD_REPORT_FD : -1;
	cfg.parent_pidfd = s->jail->parent_pidfd >= 0 ? VHU_CHILD_PIDFD : -1;
	if (vmp_jail_enter(&cfg, info, err) < 0)
		return hatch_err_wrap(err, "jail");
	if (cfg.parent_pidfd >= 0)
		close(VHU_CHILD_PIDFD);
	return 0;
}

void vhu_backend_child_main(const struct vhu_backend_spawn *s)
{
	struct hatch_err err = { 0 };
	struct vhu_blk blk;
	struct vmp_jail_info info;
	int r = vhu_backend_child_enter(s, &blk, &info, &err);
	if (r == 0)
		r = vhu_backend_serve(VHU_CHILD_CONN_FD, &blk, &err);
	if (r < 0) {
		fprintf(stderr, "hatchery-vhost-blk: %s\n", err.msg);
		_exit(1);
	}
	_exit(0);
}
