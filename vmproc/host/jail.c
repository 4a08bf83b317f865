/* jail.c (host side) - the jail's supervisor half: clone3 into the
 * namespaces, the id maps of a rootless child's user namespace, the
 * start-up probes, a child's namespace inodes read from outside, and the
 * capability bounding set emptied once. The child's half (pivot_root,
 * credentials, rlimits, loading the filter) is child/jail.c; the allowlist
 * is host/seccomp.c. See vmproc.h for the order. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cap-ng.h>

#include "child/jail.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "vmproc.h"

#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL

const char *const vmp_jail_ns_names[VMP_NS__N] = {
	[VMP_NS_MNT] = "mnt", [VMP_NS_PID] = "pid", [VMP_NS_NET] = "net",
	[VMP_NS_IPC] = "ipc", [VMP_NS_UTS] = "uts", [VMP_NS_CGROUP] = "cgroup",
	[VMP_NS_USER] = "user",
};

/* ---- clone and the id maps ---------------------------------------------- */

pid_t vmp_jail_clone3(enum vmp_jail_kind kind, int cgroup_fd, int *pidfd)
{
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_PIDFD;
	if (kind != VMP_JAIL_NONE)
		args.flags |= VMP_JAIL_NS_FLAGS;
	if (kind == VMP_JAIL_ROOTLESS)
		args.flags |= CLONE_NEWUSER;
	if (cgroup_fd >= 0) {
		/* Born in its cgroup: charged from its first page, and no
		 * window in which it runs unlimited (a migration afterwards
		 * would leave one). */
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cgroup_fd;
	}
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	args.exit_signal = SIGCHLD;
	/* Raw clone3 skips glibc's fork handlers. That is safe here: the
	 * caller is single-threaded, so no lock can be held across the fork,
	 * and the child never returns into the caller's code. */
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static int write_proc(pid_t pid, const char *file, const char *val)
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = strlen(val);
	ssize_t w = write(fd, val, n);
	if (w < 0)
		return -errno;
	return (size_t)w == n ? 0 : -EIO;
}

int vmp_jail_map_ids(pid_t pid, uid_t uid, gid_t gid)
{
	char map[48];
	int r = write_proc(pid, "setgroups", "deny");
	if (r < 0)
		return r;
	snprintf(map, sizeof(map), "%u %u 1\n", uid, uid);
	if ((r = write_proc(pid, "uid_map", map)) < 0)
		return r;
	snprintf(map, sizeof(map), "%u %u 1\n", gid, gid);
	return write_proc(pid, "gid_map", map);
}

int vmp_jail_probe_rootless(struct hatch_err *err)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "pipe");
	int pidfd = -1;
	uid_t uid = geteuid();
	gid_t gid = getegid();
	pid_t pid = vmp_jail_clone3(VMP_JAIL_ROOTLESS, -1, &pidfd);
	if (pid < 0) {
		int e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION, e,
				     "running without root needs a user namespace per "
				     "child, and this kernel refuses to create one for "
				     "uid %u (clone3 with CLONE_NEWUSER and the jail's "
				     "namespaces); check user.max_user_namespaces, "
				     "kernel.unprivileged_userns_clone or "
				     "kernel.apparmor_restrict_unprivileged_userns", uid);
	}
	if (pid == 0) {
		/* Wait for the maps (EOF), then check they took. */
		char c;
		close(pipefd[1]);
		while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(getuid() == uid && getgid() == gid ? 0 : 1);
	}
	close(pipefd[0]);
	int r = vmp_jail_map_ids(pid, uid, gid);
	close(pipefd[1]);
	siginfo_t si = { 0 };
	waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
	close(pidfd);
	if (r < 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION, -r,
				     "running without root: cannot map uid %u/gid %u "
				     "into a child's user namespace", uid, gid);
	if (si.si_code != CLD_EXITED || si.si_status != 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION, 0,
				     "running without root: a child's user namespace "
				     "did not get uid %u/gid %u mapped", uid, gid);
	return 0;
}

int vmp_jail_ns_inodes(pid_t pid, uint64_t ino[VMP_NS__N])
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/%d/ns", (int)pid);
	_cleanup_close_ int dir = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -errno;
	for (int i = 0; i < VMP_NS__N; i++) {
		struct stat st;
		/* stat follows the magic link to the nsfs inode: its number
		 * is the namespace's, the same from inside and outside. */
		if (fstatat(dir, vmp_jail_ns_names[i], &st, 0) < 0)
			return -errno;
		ino[i] = st.st_ino;
	}
	return 0;
}

int vmp_jail_drop_bounding(struct hatch_err *err)
{
	if (capng_get_caps_process() < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "capng_get_caps_process");
	/* Only the bounding set: the supervisor keeps its own capabilities. */
	capng_clear(CAPNG_SELECT_BOUNDS);
	if (capng_apply(CAPNG_SELECT_BOUNDS) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "clear the bounding set");
	uint64_t left = vmp_jail_bounding_set();
	if (left)
		return hatch_err_set(err, E_INTERNAL, 0,
				     "bounding set not empty after the drop: %#llx",
				     (unsigned long long)left);
	return 0;
}

