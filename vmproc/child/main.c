/* main.c - a child's life: build one VM, report ready, serve one lease,
 * exit (or, reuse = snapshot, reset to the snapshot and serve the next).
 * See vmproc.h for the whole and child.h for the files beside this one. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child/child.h"
#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/control.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"
#include "linux/vcpus.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

uint8_t vmp_child_rx_buf[IPC_MAX_MSG];

void vmp_child_send_failed(const char *msg)
{
	Hatchery__V1__ChildMsg m = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildFailed f = HATCHERY__V1__CHILD_FAILED__INIT;
	f.message = (char *)msg;
	m.body_case = HATCHERY__V1__CHILD_MSG__BODY_FAILED;
	m.failed = &f;
	ipc_send_pb(CTRL_FD, &m.base, NULL, 0, false);
}

/* Report a setup failure to the supervisor and exit. The supervisor logs
 * the message, counts a spawn failure and shows it in status. */
__attribute__((noreturn, format(printf, 1, 2))) static void
fail_or_die(const char *fmt, ...)
{
	char msg[HATCH_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmp_child_send_failed(msg);
	_exit(1);
}

/* Move ctrl, kvm and the supervisor's pidfd to fixed numbers, /dev/null
 * onto stdin and stdout, and close everything else we inherited from the
 * supervisor: its listening socket, epoll, signalfd, other children's
 * control sockets and pidfds, clients' connections. stderr stays: it is the
 * supervisor's log, where a sanitizer report would go. */
static void fd_hygiene_or_die(int ctrl, int kvm, int sup_pidfd, int devnull,
			      int vm, int snap, int disk)
{
	/* Move all out of the way first so the dup3 targets are free of
	 * every source. */
	int c = fcntl(ctrl, F_DUPFD_CLOEXEC, 16);
	int k = fcntl(kvm, F_DUPFD_CLOEXEC, 16);
	int p = fcntl(sup_pidfd, F_DUPFD_CLOEXEC, 16);
	int n = fcntl(devnull, F_DUPFD_CLOEXEC, 16);
	int v = fcntl(vm, F_DUPFD_CLOEXEC, 16);
	int sn = snap >= 0 ? fcntl(snap, F_DUPFD_CLOEXEC, 16) : -1;
	int dk = disk >= 0 ? fcntl(disk, F_DUPFD_CLOEXEC, 16) : -1;
	if (c < 0 || k < 0 || p < 0 || n < 0 || v < 0 || (snap >= 0 && sn < 0) ||
	    (disk >= 0 && dk < 0))
		_exit(2);
	if (dup3(c, CTRL_FD, O_CLOEXEC) < 0 || dup3(k, KVM_FD, O_CLOEXEC) < 0 ||
	    dup3(p, SUP_PIDFD, O_CLOEXEC) < 0 || dup3(v, VM_FD, O_CLOEXEC) < 0 ||
	    dup2(n, 0) < 0 || dup2(n, 1) < 0 || (sn >= 0 && dup3(sn, SNAP_FD, O_CLOEXEC) < 0) ||
	    (dk >= 0 && dup3(dk, DISK_FD, O_CLOEXEC) < 0))
		_exit(2);
	/* A disk without a snapshot leaves SNAP_FD's number holding whatever
	 * was inherited there: close it, the range below starts after the disk. */
	if (dk >= 0 && sn < 0)
		close(SNAP_FD);
	int first = dk >= 0 ? DISK_FD + 1 : sn >= 0 ? SNAP_FD + 1 : VM_FD + 1;
	if (syscall(SYS_close_range, first, ~0u, 0) < 0) {
		/* close_range is 5.9+; fall back to the slow way. */
		for (int fd = first; fd < 65536; fd++)
			close(fd);
	}
}

static void child_init_or_die(const struct vmp_spawn *s)
{
	/* Die with the supervisor. It may already have died between fork
	 * and this prctl, in which case the signal will never come: check.
	 * Not with getppid(): in a new pid namespace it is 0. The
	 * supervisor's pidfd becomes readable when it exits, whatever
	 * namespace we are in. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		_exit(1);
	struct pollfd p = { .fd = s->supervisor_pidfd, .events = POLLIN };
	if (poll(&p, 1, 0) != 0)
		_exit(1);
	/* The supervisor blocks the signals it reads from its signalfd; a
	 * child must not inherit that mask. */
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	fd_hygiene_or_die(s->ctrl_fd, s->kvm->kvm_fd, s->supervisor_pidfd,
			  s->devnull_fd, s->vm_fd, s->snap_fd, s->disk_fd);
	char name[16];
	snprintf(name, sizeof(name), "vmproc-%llu", (unsigned long long)s->child_id);
	prctl(PR_SET_NAME, name);
}

/* Take, before reporting ready, the page faults that the first request
 * would otherwise pay while a client waits: the receive buffer (BSS, not
 * yet written), the heap protobuf-c allocates from (shared copy-on-write
 * with the supervisor), and the stack the reply is packed on. Under nested
 * virtualisation a first touch costs ~5 us; the first request touches a
 * handful of pages. */
static void prefault_request_path(void)
{
	static const uint8_t ping[] = { 0x08, 0x01, 0x52, 0x00 }; /* VmRequest{id: 1, ping: {}} */
	memset(vmp_child_rx_buf, 0, 4096);
	memcpy(vmp_child_rx_buf, ping, sizeof(ping));
	Hatchery__V1__VmRequest *req =
		hatchery__v1__vm_request__unpack(NULL, sizeof(ping), vmp_child_rx_buf);
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmInfoReply info = HATCHERY__V1__VM_INFO_REPLY__INIT;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_INFO;
	rep.info = &info;
	volatile uint8_t out[2048]; /* as deep as ipc_send_pb's stack buffer */
	protobuf_c_message_pack(&rep.base, (uint8_t *)out);
	if (req)
		hatchery__v1__vm_request__free_unpacked(req, NULL);
}

/* The supervisor's first message: our pid as the host sees it. It was sent
 * right after the fork, so it is long there by the time we get here. */
static void read_hello_or_die(struct child *ch)
{
	struct ipc_msg m = { .buf = vmp_child_rx_buf };
	if (ipc_recv(CTRL_FD, &m, false) <= 0)
		_exit(1); /* supervisor gone */
	ipc_msg_close_fds(&m);
	Hatchery__V1__SupMsg *msg = hatchery__v1__sup_msg__unpack(NULL, m.len, m.buf);
	if (!msg || msg->body_case != HATCHERY__V1__SUP_MSG__BODY_HELLO)
		fail_or_die("control channel: expected SupHello first");
	const Hatchery__V1__SupHello *h = msg->hello;
	ch->host_pid = h->host_pid;
	ch->ns_ino[VMP_NS_MNT] = h->ns_mnt;
	ch->ns_ino[VMP_NS_PID] = h->ns_pid;
	ch->ns_ino[VMP_NS_NET] = h->ns_net;
	ch->ns_ino[VMP_NS_IPC] = h->ns_ipc;
	ch->ns_ino[VMP_NS_UTS] = h->ns_uts;
	ch->ns_ino[VMP_NS_CGROUP] = h->ns_cgroup;
	ch->ns_ino[VMP_NS_USER] = h->ns_user;
	hatchery__v1__sup_msg__free_unpacked(msg, NULL);
}

/* Serve one packet from the supervisor. Returns 1 to go on, 0 to exit. */
static int serve_ctrl(struct child *ch)
{
	struct ipc_msg m = { .buf = vmp_child_rx_buf };
	int r = ipc_recv(CTRL_FD, &m, false);
	if (r <= 0)
		return 0; /* supervisor gone (PDEATHSIG would follow) or broken */
	Hatchery__V1__SupMsg *msg = hatchery__v1__sup_msg__unpack(NULL, m.len, m.buf);
	if (!msg) {
		ipc_msg_close_fds(&m);
		return 0;
	}
	int go_on = 1;
	switch (msg->body_case) {
	case HATCHERY__V1__SUP_MSG__BODY_PING: {
		ipc_msg_close_fds(&m);
		/* A booted VM is healthy when its guest answers, not just its
		 * vmproc. No pong: the supervisor's health timeout replaces us;
		 * a guest that fails its heartbeat is dead anyway. */
		if (ch->guest.ready &&
		    vmp_guest_heartbeat(&ch->guest, HEARTBEAT_DEADLINE_MS, &ch->res) < 0) {
			hatchery__v1__sup_msg__free_unpacked(msg, NULL);
			return 0;
		}
		Hatchery__V1__ChildMsg out = HATCHERY__V1__CHILD_MSG__INIT;
		Hatchery__V1__ChildPong pong = HATCHERY__V1__CHILD_PONG__INIT;
		pong.seq = msg->ping->seq;
		out.body_case = HATCHERY__V1__CHILD_MSG__BODY_PONG;
		out.pong = &pong;
		ipc_send_pb(CTRL_FD, &out.base, NULL, 0, false);
		break;
	}
	case HATCHERY__V1__SUP_MSG__BODY_LEASED:
		/* Being woken was the point (docs/architecture.md,
		 * "Acquire"); a restore pool restores now unless the
		 * client's first packet beat us. */
		ipc_msg_close_fds(&m);
		vmp_child_restore_on_lease(ch);
		break;
	default:
		ipc_msg_close_fds(&m);
		break;
	}
	hatchery__v1__sup_msg__free_unpacked(msg, NULL);
	return go_on;
}

/* Everything between the fd hygiene and ChildReady: the jail, the VM, and
 * the guest a booted or prerestored pool runs before it counts as ready. */
static void build_or_die(struct child *ch)
{
	const struct vmp_spawn *s = ch->s;
	struct hatch_err err = { 0 };
	/* Before the jail: sigaction and timer_create are not on the allowlist
	 * (rt_sigaction must stay off it: see on_sigsys in child/jail.c). */
	if (vmp_guest_deadline_init(&err) < 0 ||
	    (s->linux_machine && vmp_vcpus_signal_init(&err) < 0))
		fail_or_die("%s", err.msg);
	/* The jail comes before the VM: KVM_CREATE_VM and everything after it
	 * run jailed (docs/security.md, "Why the VM is built inside"). */
	/* Rootless, the supervisor maps our ids into our user namespace
	 * right after the fork and only then sends SupHello: wait for it
	 * before changing credentials. With root it has long arrived by the
	 * time the VM is built, so it is read then, off the way to ready. */
	bool hello_first = s->jail && (s->jail->flags & VMP_JAIL_USERNS);
	if (hello_first)
		read_hello_or_die(ch);
	if (s->jail) {
		struct vmp_jail_config j = *s->jail;
		j.report_fd = CTRL_FD;
		j.parent_pidfd = SUP_PIDFD;
		if (vmp_jail_enter(&j, &ch->jail, &err) < 0)
			fail_or_die("jail: %s", err.msg);
	}
	close(SUP_PIDFD);
	/* A disk's backend maps guest RAM: a memfd (kvm/kvm.h). */
	if (s->disk_fd >= 0 && (!s->linux_machine || s->snap_fd >= 0))
		fail_or_die("a disk is only for a Linux VM that boots (restore pools with "
			    "disks are not supported)");
	unsigned vm_flags = s->disk_fd >= 0 ? VMP_VM_SHARED_MEM : 0;
	if (vmp_vm_create_flags(s->kvm, (size_t)s->memory_mib << 20, s->vcpus, vm_flags,
				&ch->vm, &err) < 0 ||
	    vmp_vm_first_run(&ch->vm, &err) < 0)
		fail_or_die("%s", err.msg);
	/* A Linux guest's vCPU threads are tasks too: made now, parked. */
	if (s->linux_machine && vmp_child_linux_build(ch, &err) < 0)
		fail_or_die("linux: %s", err.msg);
	/* KVM's worker exists now (on kernels that make one), and the vCPU
	 * threads: no task is created after this, so NPROC can drop to 1 for
	 * good (child/jail.h). */
	if (s->jail && vmp_jail_lower_nproc(&ch->jail, &err) < 0)
		fail_or_die("jail: %s", err.msg);
	/* The child needs /dev/kvm no more: only its VM fds. */
	close(KVM_FD);
	if (s->guest_elf) {
		/* Booted pool: the guest runs to its ready point before we
		 * count as ready (the supervisor validated the ELF already). */
		struct vmp_guest_image img;
		if (vmp_guest_elf_parse(s->guest_elf, s->guest_elf_len, &img, &err) < 0 ||
		    vmp_guest_boot(&ch->vm, &img, BOOT_DEADLINE_MS, &ch->guest, &ch->res, &err) < 0)
			fail_or_die("guest: %s", err.msg);
	}
	if (s->kernel && vmp_child_linux_boot(ch, &err) < 0)
		fail_or_die("linux: %s", err.msg);
	if (s->snap_fd >= 0) {
		if (s->prerestore) {
			/* Acquire hands out a VM that is already running. Its
			 * pages are still the file's page-cache pages; one
			 * heartbeat into the guest now takes the faults (and
			 * copy-on-write copies) of the call path that the first
			 * client call would otherwise pay: measured A/B, first
			 * echo p50 ~200 us instead of ~300. */
			if (vmp_child_restore_pool_snapshot(ch, false, &err) < 0)
				fail_or_die("%s", err.msg);
			/* (A Linux guest's agent has answered its resume.) */
			if (!ch->lm &&
			    vmp_guest_heartbeat(&ch->guest, HEARTBEAT_DEADLINE_MS, &ch->res) < 0)
				fail_or_die("restored guest missed its first heartbeat");
		} else {
			ch->restore_pending = true;
		}
	}
	if (!hello_first)
		read_hello_or_die(ch);
}

/* Idle until the supervisor hands the VM socket's other end to a client;
 * from then on the client's requests arrive on client_fd. Returns when the
 * lease is over or the supervisor is gone. */
static void serve_lease(struct child *ch)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = CTRL_FD, .events = POLLIN },
			{ .fd = ch->client_fd, .events = POLLIN },
		};
		int n = poll(p, 2, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* Client first: once leased, its requests are the hot path. */
		if (p[1].revents) {
			if (!vmp_child_serve_client(ch))
				return;
		}
		if (p[0].revents) {
			if (!serve_ctrl(ch))
				return;
		}
	}
}

void vmp_child_main(const struct vmp_spawn *s)
{
	uint64_t t_start = hatch_now_ns();
	child_init_or_die(s);
	/* fd_hygiene moved the kvm fd; point our copy of the host at it. */
	struct vmp_kvm_host kvm = *s->kvm;
	kvm.kvm_fd = KVM_FD;
	struct vmp_spawn me = *s;
	me.ctrl_fd = CTRL_FD;
	if (me.disk_fd >= 0)
		me.disk_fd = DISK_FD;
	me.kvm = &kvm;

	static struct child ch; /* big (a call's logs); zeroed, in BSS */
	ch.s = &me;
	ch.client_fd = VM_FD;
	ch.t_start = t_start;
	ch.t_init = hatch_now_ns();
	build_or_die(&ch);
	prefault_request_path();

	Hatchery__V1__ChildMsg out = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildReady ready = HATCHERY__V1__CHILD_READY__INIT;
	ch.t_ready = hatch_now_ns();
	ready.setup_ns = ch.t_ready - s->t_fork;
	out.body_case = HATCHERY__V1__CHILD_MSG__BODY_READY;
	out.ready = &ready;
	if (ipc_send_pb(CTRL_FD, &out.base, NULL, 0, false) < 0)
		_exit(1);

	if (ch.lm) {
		/* A Linux VM's lease ends the child, unless a restore pool
		 * resets it to its snapshot for the next (reuse = snapshot). */
		for (;;) {
			vmp_child_linux_serve(&ch);
			if (!(s->reuse && ch.lease_clean && !ch.restore_failed))
				break;
			struct hatch_err err = { 0 };
			if (vmp_child_reset_for_next_lease(&ch, &err) < 0) {
				vmp_child_send_failed(err.msg);
				_exit(1);
			}
		}
		_exit(ch.restore_failed ? 1 : 0);
	}
	/* Serve a lease; with reuse = snapshot, reset and serve the next.
	 * Only a lease that ended the ordinary way (Release or EOF) with the
	 * guest alive leaves a VM we can reset. Anything else — a fault or
	 * deadline (guest.dead), a failed or broken restore, the supervisor
	 * gone — ends the child as in single use. */
	for (;;) {
		serve_lease(&ch);
		if (!(s->reuse && ch.lease_clean && ch.guest.ready && !ch.guest.dead &&
		      !ch.restore_failed && !ch.restore_broke))
			break;
		struct hatch_err err = { 0 };
		if (vmp_child_reset_for_next_lease(&ch, &err) < 0) {
			/* Exit 1 with the reason: the supervisor logs it
			 * and replaces us. */
			vmp_child_send_failed(err.msg);
			_exit(1);
		}
	}
	/* Lease over (or supervisor gone). Exiting tears the VM down; the
	 * supervisor sees our pidfd and forks a replacement. A failed restore
	 * on lease (or a failed reset, above) exits 1: only then does the
	 * supervisor read the ChildFailed we sent (its reaper skips the
	 * channel of a clean exit). Unread packets on the control socket
	 * (SupLeased, a ping) do not lose it: closing with them unread resets
	 * the supervisor's end, and ipc_recv reads on past that reset to what
	 * we sent before it, then EOF. */
	if (ch.restore_failed)
		_exit(1);
	_exit(0);
}
