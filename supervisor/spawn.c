/* spawn.c - fork a child with clone3(CLONE_PIDFD): no exec, the supervisor
 * is the zygote. The child is born in its namespaces and (where cgroup v2
 * is usable) in its own cgroup; it enters the rest of the jail itself
 * (vmproc/child/jail.c). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/control.pb-c.h"
#include "disk.h"
#include "server.h"
#include "vmproc.h"

#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL
/* A Linux child's device model: per virtio queue an ioeventfd and per
 * device an irqfd, the vCPU threads' "VM ended" eventfd. */
#define LINUX_EXTRA_FDS 16
/* A Linux child's address space beyond a kernel-less one's: a stack per
 * vCPU thread (glibc's default, 8 MiB, plus its guard), the machine's agent
 * inbox (4 MiB) and the device model's heap. */
#define LINUX_AS_EXTRA(vcpus) ((uint64_t)(vcpus) * (9ull << 20) + (32ull << 20))
#define E_PRECOND HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION

/* Room in RLIMIT_AS above the supervisor's own size (inherited by the
 * fork) and the guest RAM: malloc arenas, protobuf buffers, kvm_run pages. */
#define AS_HEADROOM (64ull << 20)
/* A snapshot's sections: per-vCPU state (xsave, MSRs: < 64 KiB each) and
 * the runtime and device blobs (16 MiB each at most). */
#define SNAP_FSIZE_HEADROOM (64ull << 20)

/* ASan reserves terabytes of shadow address space: no RLIMIT_AS under it. */
#if defined(__SANITIZE_ADDRESS__)
#define JAIL_SANITIZER_FLAGS VMP_JAIL_NO_AS_LIMIT
#else
#define JAIL_SANITIZER_FLAGS 0u
#endif

int sup_spawn(struct sup_child *c, const struct sup_server_opts *o,
	      struct hatch_err *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "socketpair");
	_cleanup_close_ int mine = sv[0];
	_cleanup_close_ int theirs = sv[1];
	/* The VM socket is made with the child, not at lease time: on Acquire
	 * the supervisor only forwards the client's end, and the child, which
	 * has been polling its end since it became ready, is not on the
	 * acquire path at all. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "socketpair");
	_cleanup_close_ int vm_client = sv[0];
	_cleanup_close_ int vm_child = sv[1];

	const struct sup_pool_config *cfg = c->pool->cfg;
	/* With root, a uid of its own per child; rootless, the only id we
	 * can map: our own (docs/security.md says what that costs). */
	uid_t uid = o->rootless ? geteuid()
				: (uid_t)(o->cfg->jail_uid_base + (unsigned)c->slot);
	gid_t gid = o->rootless ? getegid() : (gid_t)uid;
	struct vmp_jail_config jail = {
		.uid = uid,
		.gid = gid,
		/* 0-2, control, /dev/kvm, supervisor pidfd, the VM, its
		 * vCPUs, the client's socket, the snapshot, fds of a
		 * rejected packet. */
		.nofile = 16 + cfg->vcpus + (cfg->linux_machine ? LINUX_EXTRA_FDS : 0),
		.nproc = cfg->linux_machine ? VMP_JAIL_NPROC_LINUX(cfg->vcpus) : 0,
		.as_extra = ((uint64_t)cfg->memory_mib << 20) +
			    (uint64_t)cfg->vcpus * (uint64_t)o->kvm->vcpu_mmap_size +
			    AS_HEADROOM + VMP_GUEST_MAX_ELF /* a Load maps the ELF */ +
			    (cfg->linux_machine ? LINUX_AS_EXTRA(cfg->vcpus) : 0),
		/* A snapshot: guest RAM plus its state sections. */
		.fsize = ((uint64_t)cfg->memory_mib << 20) + SNAP_FSIZE_HEADROOM,
		.filter = &o->filters[cfg->linux_machine ? VMP_FILTER_LINUX : VMP_FILTER_KERNELLESS][cfg->seccomp],
		.flags = JAIL_SANITIZER_FLAGS | (o->rootless ? VMP_JAIL_USERNS : 0),
		.report_fd = -1,
		.parent_pidfd = -1,
	};
	/* A disk: its backend first, forked with its end of the connection;
	 * the child gets the other (DISK_FD). */
	_cleanup_close_ int disk_fd = -1;
	if (cfg->disk[0] &&
	    sup_disk_start(c, o, (uid_t)(o->cfg->jail_uid_base + (unsigned)c->disk_slot),
			   (gid_t)(o->cfg->jail_uid_base + (unsigned)c->disk_slot), &disk_fd,
			   err) < 0)
		return -1;
	if (cfg->disk_socket[0] && sup_disk_connect(cfg, &disk_fd, err) < 0)
		return -1;
	struct vmp_spawn s = {
		.ctrl_fd = theirs,
		.vm_fd = vm_child,
		.kvm = o->kvm,
		.pool = cfg->name,
		.kind = sup_pool_kind_name(cfg->kind),
		.guest_elf = cfg->guest_elf,
		.guest_elf_len = cfg->guest_elf_len,
		.linux_machine = cfg->linux_machine,
		.disk_fd = disk_fd,
		.kernel = cfg->kernel_img,
		.kernel_len = cfg->kernel_len,
		.initrd = cfg->initrd_img,
		.initrd_len = cfg->initrd_len,
		.cmdline_extra = cfg->cmdline[0] ? cfg->cmdline : NULL,
		.boot_timeout_ms = cfg->boot_timeout_ms,
		.snap_fd = cfg->kind == SUP_POOL_RESTORE ? cfg->snap_fd : -1,
		.snap_path = cfg->kind == SUP_POOL_RESTORE ? cfg->snapshot : NULL,
		.snap_header_crc = cfg->snap_header_crc,
		.snap_size = cfg->snap_size,
		.prerestore = cfg->prerestore,
		.reuse = cfg->kind == SUP_POOL_RESTORE && cfg->reuse == SUP_REUSE_SNAPSHOT,
		.child_id = c->id,
		.memory_mib = cfg->memory_mib,
		.vcpus = cfg->vcpus,
		.supervisor_pidfd = o->self_pidfd,
		.devnull_fd = o->devnull_fd,
		.jail = o->no_jail ? NULL : &jail,
		.seccomp_action = sup_seccomp_mode_name(cfg->seccomp),
		.t_fork = c->t_fork,
	};
	_cleanup_close_ int cgfd = -1;
	if (!o->no_jail && o->cgroup->usable) {
		if (sup_cgroup_child_create(o->cgroup, cfg, c->id, &cgfd, err) < 0)
			return -1;
		c->in_cgroup = true;
	}
	/* Killed and waited for on every failure below. */
	_cleanup_pid_ int pidfd = -1;
	enum vmp_jail_kind kind = o->no_jail  ? VMP_JAIL_NONE
				  : o->rootless ? VMP_JAIL_ROOTLESS
						: VMP_JAIL_ROOT;
	pid_t pid = vmp_jail_clone3(kind, cgfd, &pidfd);
	if (pid < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "clone3");
	if (pid == 0) {
		close(mine);
		close(vm_client);
		vmp_child_main(&s); /* never returns */
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	if (kind == VMP_JAIL_ROOTLESS) {
		/* The child waits for SupHello before it changes credentials,
		 * so the maps are in place by then. */
		int r = vmp_jail_map_ids(pid, uid, gid);
		if (r < 0)
			return hatch_err_set(err, E_INTERNAL, -r,
					     "map uid %u/gid %u into child %d's user "
					     "namespace", uid, gid, pid);
	}
	int fl = fcntl(mine, F_GETFL);
	fcntl(mine, F_SETFL, fl | O_NONBLOCK);
	c->pid = pid;
	c->pidfd = steal_fd(&pidfd);
	/* The child reads this before it reports ready. The socket is new
	 * and empty, so the send cannot block. */
	Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
	Hatchery__V1__SupHello hello = HATCHERY__V1__SUP_HELLO__INIT;
	hello.host_pid = (uint32_t)pid;
	uint64_t ino[VMP_NS__N] = { 0 };
	/* Not reaped yet, so the pid is still this child's. A failure (the
	 * child already died) leaves zeros; its death is handled as usual. */
	if (!o->no_jail)
		vmp_jail_ns_inodes(pid, ino);
	hello.ns_mnt = ino[VMP_NS_MNT];
	hello.ns_pid = ino[VMP_NS_PID];
	hello.ns_net = ino[VMP_NS_NET];
	hello.ns_ipc = ino[VMP_NS_IPC];
	hello.ns_uts = ino[VMP_NS_UTS];
	hello.ns_cgroup = ino[VMP_NS_CGROUP];
	hello.ns_user = ino[VMP_NS_USER];
	m.body_case = HATCHERY__V1__SUP_MSG__BODY_HELLO;
	m.hello = &hello;
	ipc_send_pb(mine, &m.base, NULL, 0, true);
	c->ctrl_fd = steal_fd(&mine);
	c->vm_fd = steal_fd(&vm_client);
	return 0;
}

/* "Uid:\tR\tE\tS\tF\n": any of the four in [base, base + n)? */
static bool status_uid_in(const char *status, uid_t base, unsigned n, uid_t *hit)
{
	const char *u = strstr(status, "\nUid:");
	if (!u)
		return false;
	u += 5;
	for (int i = 0; i < 4; i++) {
		char *end;
		unsigned long v = strtoul(u, &end, 10);
		if (end == u)
			return false;
		if (v >= base && v - base < n) {
			*hit = (uid_t)v;
			return true;
		}
		u = end;
	}
	return false;
}

int sup_jail_check_uids(uid_t base, unsigned n, struct hatch_err *err)
{
	DIR *d = opendir("/proc");
	if (!d)
		return hatch_err_set(err, E_INTERNAL, errno, "opendir /proc");
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		char path[300], buf[4096];
		snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone meanwhile */
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = '\0';
		uid_t hit;
		if (status_uid_in(buf, base, n, &hit)) {
			const char *nm = strstr(buf, "Name:\t");
			int nl = nm ? (int)strcspn(nm + 6, "\n") : 1;
			rc = hatch_err_set(err, E_PRECOND, 0,
					   "jail uid range %u..%u is in use: process %s "
					   "(%.*s) runs as uid %u; another hatcheryd, or "
					   "pick another [supervisor] jail_uid_base",
					   base, base + n - 1, de->d_name, nl,
					   nm ? nm + 6 : "?", hit);
			break;
		}
	}
	closedir(d);
	return rc;
}
