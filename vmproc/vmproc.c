/* vmproc.c - the child: build one VM, report ready, serve one lease, exit
 * (or, reuse = snapshot, reset to the snapshot and serve the next). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/control.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"
#include "guest.h"
#include "vmsnap.h"
#include "vmproc.h"

/* Fixed fd numbers in the child after fd hygiene. */
#define CTRL_FD 3
#define KVM_FD 4
#define SUP_PIDFD 5 /* closed once the jail has re-armed PDEATHSIG */
#define VM_FD 6     /* the VM socket: the client's requests arrive here */
#define SNAP_FD 7   /* restore pools: the pool's snapshot (read-only) */

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* One receive buffer for the child's life; static so the fork does not
 * have to copy a heap allocation, and only the pages a message touches get
 * dirtied. */
static uint8_t rx_buf[IPC_MAX_MSG];

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
	Hatchery__V1__ChildMsg m = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildFailed f = HATCHERY__V1__CHILD_FAILED__INIT;
	f.message = msg;
	m.body_case = HATCHERY__V1__CHILD_MSG__BODY_FAILED;
	m.failed = &f;
	ipc_send_pb(CTRL_FD, &m.base, NULL, 0, false);
	_exit(1);
}

/* Move ctrl, kvm and the supervisor's pidfd to fixed numbers, /dev/null
 * onto stdin and stdout, and close everything else we inherited from the
 * supervisor: its listening socket, epoll, signalfd, other children's
 * control sockets and pidfds, clients' connections. stderr stays: it is the
 * supervisor's log, where a sanitizer report would go. */
static void fd_hygiene_or_die(int ctrl, int kvm, int sup_pidfd, int devnull,
			      int vm, int snap)
{
	/* Move all out of the way first so the dup3 targets are free of
	 * every source. */
	int c = fcntl(ctrl, F_DUPFD_CLOEXEC, 16);
	int k = fcntl(kvm, F_DUPFD_CLOEXEC, 16);
	int p = fcntl(sup_pidfd, F_DUPFD_CLOEXEC, 16);
	int n = fcntl(devnull, F_DUPFD_CLOEXEC, 16);
	int v = fcntl(vm, F_DUPFD_CLOEXEC, 16);
	int sn = snap >= 0 ? fcntl(snap, F_DUPFD_CLOEXEC, 16) : -1;
	if (c < 0 || k < 0 || p < 0 || n < 0 || v < 0 || (snap >= 0 && sn < 0))
		_exit(2);
	if (dup3(c, CTRL_FD, O_CLOEXEC) < 0 || dup3(k, KVM_FD, O_CLOEXEC) < 0 ||
	    dup3(p, SUP_PIDFD, O_CLOEXEC) < 0 || dup3(v, VM_FD, O_CLOEXEC) < 0 ||
	    dup2(n, 0) < 0 || dup2(n, 1) < 0 || (sn >= 0 && dup3(sn, SNAP_FD, O_CLOEXEC) < 0))
		_exit(2);
	int first = sn >= 0 ? SNAP_FD + 1 : VM_FD + 1;
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
			  s->devnull_fd, s->vm_fd, s->snap_fd);
	char name[16];
	snprintf(name, sizeof(name), "vmproc-%llu", (unsigned long long)s->child_id);
	prctl(PR_SET_NAME, name);
}

#define BOOT_DEADLINE_MS 1000
#define CALL_DEADLINE_MS 1000      /* a Call's deadline when it gives none */
#define CALL_DEADLINE_MAX_MS 60000
#define HEARTBEAT_DEADLINE_MS 100
/* A result must fit in one reply packet with its envelope. */
#define RESULT_MAX (IPC_MAX_MSG - 8192)

struct child {
	const struct vmp_spawn *s;
	struct vmp_vm vm;
	struct vmp_guest guest;
	struct vmp_guest_result res; /* big (logs): one per child, not on the stack */
	int client_fd;
	uint32_t host_pid;        /* from SupHello: we are pid 1 in here */
	struct vmp_jail_info jail;
	/* From SupHello: the supervisor reads them from outside (jail.h). */
	uint64_t ns_ino[VMP_NS__N];
	/* CLOCK_MONOTONIC: our first instruction, fd hygiene done, ready. */
	uint64_t t_start, t_init, t_ready;
	/* A Restore failed after it changed the VM: the VM is unusable. */
	bool restore_broke;
	/* Restore pool, prerestore = false: the snapshot is restored on lease
	 * (SupLeased or the client's first packet, whichever comes first). */
	bool restore_pending;
	/* ... and that restore failed: every request gets this error, then
	 * the child exits (the supervisor forks a fresh one). */
	bool restore_failed;
	/* The lease ended the ordinary way: Release, or the client hung up.
	 * Only then may a reuse = snapshot child reset and serve again. */
	bool lease_clean;
	uint64_t resets;          /* how many times this child was reset */
	int restore_err_code;
	char restore_err[HATCH_ERR_MSG_MAX];
};

static void send_error(int fd, uint64_t id, int code, const char *msg)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
	e.code = code;
	e.message = (char *)msg;
	rep.id = id;
	rep.error = &e;
	ipc_send_pb(fd, &rep.base, NULL, 0, false);
}

static void fill_jail_info(Hatchery__V1__VmInfoReply *info,
			   const struct vmp_jail_info *j, const char *action)
{
	if (!j->jailed)
		return;
	info->jailed = true;
	info->uid = j->euid;
	info->gid = j->egid;
	info->supplementary_groups = (uint32_t)j->ngroups;
	info->cap_eff = j->cap_eff;
	info->cap_prm = j->cap_prm;
	info->cap_inh = j->cap_inh;
	info->cap_amb = j->cap_amb;
	info->cap_bnd = j->cap_bnd;
	info->no_new_privs = j->no_new_privs == 1;
	info->seccomp_mode = (uint32_t)j->seccomp_mode;
	info->seccomp_action = (char *)(j->seccomp_mode ? action : "");
	info->ns_mnt = j->ns_ino[VMP_NS_MNT];
	info->ns_pid = j->ns_ino[VMP_NS_PID];
	info->ns_net = j->ns_ino[VMP_NS_NET];
	info->ns_ipc = j->ns_ino[VMP_NS_IPC];
	info->ns_uts = j->ns_ino[VMP_NS_UTS];
	info->ns_cgroup = j->ns_ino[VMP_NS_CGROUP];
	info->ns_user = j->ns_ino[VMP_NS_USER];
	info->cgroup = (char *)j->cgroup;
	info->rlimit_nofile = j->rlim_nofile;
	info->rlimit_nproc = j->rlim_nproc;
	info->rlimit_fsize = j->rlim_fsize;
	info->rlimit_core = j->rlim_core;
	info->rlimit_as = j->rlim_as;
	info->jail_proc_ns = j->proc_ns;
	info->jail_pivot_ns = j->pivot_ns;
	info->jail_creds_ns = j->creds_ns;
	info->jail_limits_ns = j->limits_ns;
	info->jail_seccomp_ns = j->seccomp_ns;
}

/* The reply for a call that did not return a result. Returns the
 * ErrorCode; whether the VM survives is the guest's business (g->dead). */
static int outcome_code(enum vmp_guest_outcome o)
{
	switch (o) {
	case VMP_GUEST_OK: return E(OK);
	case VMP_GUEST_ERROR: return E(GUEST_ERROR);
	case VMP_GUEST_NO_FUNCTION: return E(NOT_FOUND);
	case VMP_GUEST_DEADLINE: return E(DEADLINE_EXCEEDED);
	case VMP_GUEST_FAULT:
	case VMP_GUEST_TRIPLE_FAULT:
	case VMP_GUEST_BAD_IO:
	case VMP_GUEST_PROTOCOL: return E(GUEST_FAULT);
	case VMP_GUEST_HOST_ERROR: break;
	}
	return E(VM_ERROR);
}

/* Call{function, payload, deadline}. Returns 0 when the guest is dead (the
 * child exits after this reply: a VM that faulted is never reused). */
static int serve_call(struct child *ch, uint64_t id, const Hatchery__V1__VmCallRequest *c)
{
	if (!ch->guest.ready) {
		send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "no guest in this VM: Load one first (pool kind empty)");
		return 1;
	}
	uint32_t dl = c->deadline_ms ? c->deadline_ms : CALL_DEADLINE_MS;
	if (dl > CALL_DEADLINE_MAX_MS)
		dl = CALL_DEADLINE_MAX_MS;
	struct vmp_guest_result *res = &ch->res;
	vmp_guest_call(&ch->guest, c->function ? c->function : "", c->payload.data,
		       c->payload.len, dl, res);
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmCallReply body = HATCHERY__V1__VM_CALL_REPLY__INIT;
	Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
	Hatchery__V1__GuestFault gf = HATCHERY__V1__GUEST_FAULT__INIT;
	rep.id = id;
	if (res->outcome == VMP_GUEST_OK && res->out_len > RESULT_MAX) {
		res->outcome = VMP_GUEST_ERROR;
		snprintf(res->message, sizeof(res->message),
			 "the result (%zu bytes) does not fit in one reply packet (at most %d)",
			 res->out_len, RESULT_MAX);
	}
	if (res->outcome == VMP_GUEST_OK) {
		body.result.data = (uint8_t *)res->out;
		body.result.len = res->out_len;
		body.log.data = (uint8_t *)res->log;
		body.log.len = res->log_len;
		body.log_dropped = res->log_dropped;
		body.run_ns = res->run_ns;
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_CALL;
		rep.call = &body;
	} else {
		e.code = outcome_code(res->outcome);
		e.message = res->message;
		if (res->outcome == VMP_GUEST_FAULT && res->fault.rip) {
			gf.vector = res->fault.vector;
			gf.rip = res->fault.rip;
			gf.address = res->fault.address;
			gf.error_code = res->fault.error_code;
			e.guest_fault = &gf;
		}
		rep.error = &e;
	}
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	return ch->guest.dead ? 0 : 1;
}

/* Load{fd}: boot a client's guest in an empty VM, once. The fd is read
 * through a private read-only mapping (mmap is on the allowlist, read is
 * not), which stays until the child exits. */
static int serve_load(struct child *ch, uint64_t id, int fd)
{
	struct hatch_err err = { 0 };
	if (ch->guest.ready || ch->guest.dead) {
		send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "this VM already has a guest; a VM is loaded once");
		return 1;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size > (off_t)VMP_GUEST_MAX_ELF) {
		send_error(ch->client_fd, id, E(INVALID_ARGUMENT),
			   "Load: the fd must be a regular file of 1 byte .. 16 MiB");
		return 1;
	}
	void *elf = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (elf == MAP_FAILED) {
		hatch_err_set(&err, E(INVALID_ARGUMENT), errno, "Load: mmap the guest ELF");
		send_error(ch->client_fd, id, err.code, err.msg);
		return 1;
	}
	struct vmp_guest_image img;
	if (vmp_guest_elf_parse(elf, (size_t)size, &img, &err) < 0) {
		send_error(ch->client_fd, id, err.code, err.msg);
		return 1;
	}
	if (vmp_guest_boot(&ch->vm, &img, BOOT_DEADLINE_MS, &ch->guest, &ch->res, &err) < 0) {
		/* A guest that cannot boot took the VM with it. */
		send_error(ch->client_fd, id, outcome_code(ch->res.outcome) == E(OK) ?
			   E(VM_ERROR) : outcome_code(ch->res.outcome), err.msg);
		return 0;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmLoadReply body = HATCHERY__V1__VM_LOAD_REPLY__INIT;
	char *fns[HATCH_FN_MAX];
	for (unsigned i = 0; i < ch->guest.n_fn; i++)
		fns[i] = ch->guest.fn[i];
	body.n_functions = ch->guest.n_fn;
	body.functions = fns;
	body.boot_ns = ch->guest.boot_ns;
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_LOAD;
	rep.load = &body;
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	return 1;
}

/* Save{fd}: the snapshot goes to the client's file. The VM lives on. */
static int serve_save(struct child *ch, uint64_t id, int fd)
{
	struct hatch_err err = { 0 };
	if (!ch->guest.ready || ch->guest.dead) {
		send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "Save: no live guest in this VM");
		return 1;
	}
	struct vmp_snap_save_stats st;
	if (vmp_snap_save(&ch->vm, ch->s->kvm, &ch->guest, fd, &st, &err) < 0) {
		send_error(ch->client_fd, id, err.code, err.msg);
		return 1;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmSaveReply body = HATCHERY__V1__VM_SAVE_REPLY__INIT;
	body.vcpu_state_ns = st.vcpu_ns;
	body.vm_state_ns = st.vm_ns;
	body.memory_write_ns = st.write_ns;
	body.bytes_written = st.bytes;
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_SAVE;
	rep.save = &body;
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	return 1;
}

/* Restore{fd}: into a VM that has no guest yet. A snapshot rejected before
 * the VM was touched leaves it as it was; a failure after ends the VM. */
static int serve_restore(struct child *ch, uint64_t id, int fd)
{
	struct hatch_err err = { 0 };
	if (ch->guest.ready || ch->guest.dead || ch->restore_broke) {
		send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "Restore: this VM already has a guest; restore into an empty VM");
		return 1;
	}
	struct vmp_snap_restore_stats st;
	bool touched = false;
	if (vmp_snap_restore(&ch->vm, ch->s->kvm, fd, &ch->guest, &st, &touched, &err) < 0) {
		send_error(ch->client_fd, id, err.code, err.msg);
		ch->restore_broke = touched;
		return touched ? 0 : 1;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmRestoreReply body = HATCHERY__V1__VM_RESTORE_REPLY__INIT;
	char *fns[HATCH_FN_MAX];
	for (unsigned i = 0; i < ch->guest.n_fn; i++)
		fns[i] = ch->guest.fn[i];
	body.n_functions = ch->guest.n_fn;
	body.functions = fns;
	body.map_ns = st.map_ns;
	body.vcpu_state_ns = st.vcpu_ns;
	body.vm_state_ns = st.vm_ns;
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_RESTORE;
	rep.restore = &body;
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	return 1;
}

/* Restore the pool's snapshot (inherited at SNAP_FD) into our fresh VM.
 * The supervisor checked the whole file at start-up; the file may have
 * been rewritten in place since (the fd follows the inode, not the path),
 * so compare the size and header CRC it recorded, and let
 * vmp_snap_restore() parse everything again, which catches a changed
 * section by its CRC. The memory data's CRCs are not checked (see
 * docs/snapshot.md, "What is not done"). */
static int restore_pool_snapshot(struct child *ch, bool reset, struct hatch_err *err)
{
	const struct vmp_spawn *s = ch->s;
	struct snap_header hdr;
	uint64_t size;
	if (snap_header_read_fd(SNAP_FD, &hdr, &size, err) < 0) {
		err->code = E(FAILED_PRECONDITION);
		return hatch_err_wrap(err, "pool snapshot %s changed since hatcheryd started "
				      "(%llu bytes; it was %llu bytes, header crc %08x): restart "
				      "hatcheryd to use the new file", s->snap_path,
				      (unsigned long long)size, (unsigned long long)s->snap_size,
				      s->snap_header_crc);
	}
	if (size != s->snap_size || hdr.crc != s->snap_header_crc)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "pool snapshot %s changed since hatcheryd started "
				     "(%llu bytes, header crc %08x; it was %llu bytes, %08x): "
				     "restart hatcheryd to use the new file",
				     s->snap_path, (unsigned long long)size, hdr.crc,
				     (unsigned long long)s->snap_size, s->snap_header_crc);
	struct vmp_snap_restore_stats st;
	bool touched = false;
	int r = reset ? vmp_snap_reset(&ch->vm, s->kvm, SNAP_FD, &ch->guest, &st, &touched, err)
		      : vmp_snap_restore(&ch->vm, s->kvm, SNAP_FD, &ch->guest, &st, &touched, err);
	if (r < 0) {
		/* Sound at start-up, so a refusal now means the file changed. */
		if (!touched)
			err->code = E(FAILED_PRECONDITION);
		return hatch_err_wrap(err, "pool snapshot %s (changed since hatcheryd "
				      "started?)", s->snap_path);
	}
	return 0;
}

/* On lease, once. A failure is reported to the supervisor (logged, shown as
 * the pool's last_error) and kept for the client's requests. */
static void restore_on_lease(struct child *ch)
{
	if (!ch->restore_pending)
		return;
	ch->restore_pending = false;
	struct hatch_err err = { 0 };
	if (restore_pool_snapshot(ch, false, &err) == 0)
		return;
	ch->restore_failed = true;
	ch->restore_err_code = err.code == E(FAILED_PRECONDITION) ? err.code : E(VM_ERROR);
	snprintf(ch->restore_err, sizeof(ch->restore_err), "%s", err.msg);
	Hatchery__V1__ChildMsg m = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildFailed f = HATCHERY__V1__CHILD_FAILED__INIT;
	f.message = ch->restore_err;
	m.body_case = HATCHERY__V1__CHILD_MSG__BODY_FAILED;
	m.failed = &f;
	ipc_send_pb(CTRL_FD, &m.base, NULL, 0, false);
}

/* The restore on lease failed: answer the request with that, and end. */
static int refuse_request(struct child *ch, struct ipc_msg *m)
{
	ipc_msg_close_fds(m);
	Hatchery__V1__VmRequest *req = hatchery__v1__vm_request__unpack(NULL, m->len, m->buf);
	send_error(ch->client_fd, req ? req->id : 0, ch->restore_err_code, ch->restore_err);
	if (req)
		hatchery__v1__vm_request__free_unpacked(req, NULL);
	return 0;
}

/* Serve one packet from the client. Returns 1 to go on, 0 to end the lease. */
static int serve_client(struct child *ch)
{
	/* Before any request is looked at: the VM must hold the snapshot. */
	restore_on_lease(ch);
	struct ipc_msg m = { .buf = rx_buf };
	int r = ipc_recv(ch->client_fd, &m, false);
	if (r == 0) {
		ch->lease_clean = true;
		return 0; /* the client hung up: the lease is over */
	}
	if (r == -EMSGSIZE || r == -ETOOMANYREFS) {
		send_error(ch->client_fd, 0,
			   r == -EMSGSIZE ? E(MESSAGE_TOO_LARGE) : E(UNEXPECTED_FDS),
			   ipc_strerror(r));
		return 1;
	}
	if (r < 0) {
		/* ECONNRESET: the client closed with replies unread; still
		 * an ordinary end of its lease. */
		ch->lease_clean = r == -ECONNRESET;
		return 0;
	}
	if (ch->restore_failed)
		return refuse_request(ch, &m);
	Hatchery__V1__VmRequest *req = hatchery__v1__vm_request__unpack(NULL, m.len, m.buf);
	if (!req) {
		ipc_msg_close_fds(&m);
		send_error(ch->client_fd, 0, E(MALFORMED),
			   "packet did not decode as hatchery.v1.VmRequest");
		return 1;
	}
	/* Load, Save and Restore carry exactly one fd; nothing else any. */
	const char *fd_what = NULL;
	switch (req->body_case) {
	case HATCHERY__V1__VM_REQUEST__BODY_LOAD:
		fd_what = "Load carries exactly one fd: the guest ELF";
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_SAVE:
		fd_what = "Save carries exactly one fd: the file to write";
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_RESTORE:
		fd_what = "Restore carries exactly one fd: the snapshot";
		break;
	default:
		break;
	}
	if (m.nfds != (fd_what ? 1u : 0u)) {
		ipc_msg_close_fds(&m);
		send_error(ch->client_fd, fd_what ? req->id : 0, E(UNEXPECTED_FDS),
			   fd_what ? fd_what
				   : "VM requests other than Load, Save and Restore carry no file descriptors");
		hatchery__v1__vm_request__free_unpacked(req, NULL);
		return 1;
	}
	if (fd_what) {
		int go = req->body_case == HATCHERY__V1__VM_REQUEST__BODY_LOAD ?
				 serve_load(ch, req->id, m.fds[0]) :
			 req->body_case == HATCHERY__V1__VM_REQUEST__BODY_SAVE ?
				 serve_save(ch, req->id, m.fds[0]) :
				 serve_restore(ch, req->id, m.fds[0]);
		close(m.fds[0]);
		hatchery__v1__vm_request__free_unpacked(req, NULL);
		return go;
	}
	if (req->body_case == HATCHERY__V1__VM_REQUEST__BODY_CALL) {
		int go = serve_call(ch, req->id, req->call);
		hatchery__v1__vm_request__free_unpacked(req, NULL);
		return go;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	rep.id = req->id;
	Hatchery__V1__VmPingReply ping = HATCHERY__V1__VM_PING_REPLY__INIT;
	Hatchery__V1__VmInfoReply info = HATCHERY__V1__VM_INFO_REPLY__INIT;
	Hatchery__V1__VmReleaseReply rel = HATCHERY__V1__VM_RELEASE_REPLY__INIT;
	char *fns[HATCH_FN_MAX]; /* VmInfoReply.guest_functions, until the send */
	int go_on = 1;
	switch (req->body_case) {
	case HATCHERY__V1__VM_REQUEST__BODY_PING:
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_PING;
		rep.ping = &ping;
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_INFO: {
		const struct vmp_spawn *s = ch->s;
		/* Inside a pid namespace getpid() is 1; the supervisor told
		 * us our host pid in SupHello. */
		info.pid = ch->jail.jailed ? ch->host_pid : (uint32_t)getpid();
		info.pool = (char *)s->pool;
		info.child_id = s->child_id;
		info.memory_mib = s->memory_mib;
		info.vcpus = ch->vm.nvcpus;
		info.kind = (char *)s->kind;
		info.kvm_api_version = s->kvm->api_version;
		info.irqchip = ch->vm.irqchip;
		info.pit = ch->vm.pit;
		info.cpuid_entries = ch->vm.cpuid_entries;
		info.create_vm_ns = ch->vm.t.create_vm_ns;
		info.memory_ns = ch->vm.t.memory_ns;
		info.irqchip_ns = ch->vm.t.irqchip_ns;
		info.vcpus_ns = ch->vm.t.vcpus_ns;
		memcpy(ch->jail.ns_ino, ch->ns_ino, sizeof(ch->ns_ino));
		fill_jail_info(&info, &ch->jail, s->seccomp_action);
		info.fork_ns = ch->t_start - s->t_fork;
		info.child_init_ns = ch->t_init - ch->t_start;
		info.ready_ns = ch->t_ready - s->t_fork;
		if (ch->guest.ready) {
			for (unsigned i = 0; i < ch->guest.n_fn; i++)
				fns[i] = ch->guest.fn[i];
			info.n_guest_functions = ch->guest.n_fn;
			info.guest_functions = fns;
			info.guest_boot_ns = ch->guest.boot_ns;
		}
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_INFO;
		rep.info = &info;
		break;
	}
	case HATCHERY__V1__VM_REQUEST__BODY_RELEASE:
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_RELEASE;
		rep.release = &rel;
		ch->lease_clean = true;
		go_on = 0;
		break;
	default: {
		Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
		e.code = E(INVALID_ARGUMENT);
		e.message = (char *)"unknown or empty VmRequest body";
		rep.error = &e;
		ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
		hatchery__v1__vm_request__free_unpacked(req, NULL);
		return 1;
	}
	}
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	hatchery__v1__vm_request__free_unpacked(req, NULL);
	return go_on;
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
	memset(rx_buf, 0, 4096);
	memcpy(rx_buf, ping, sizeof(ping));
	Hatchery__V1__VmRequest *req =
		hatchery__v1__vm_request__unpack(NULL, sizeof(ping), rx_buf);
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmInfoReply info = HATCHERY__V1__VM_INFO_REPLY__INIT;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_INFO;
	rep.info = &info;
	volatile uint8_t out[2048]; /* as deep as ipc_send_pb's stack buffer */
	protobuf_c_message_pack(&rep.base, (uint8_t *)out);
	if (req)
		hatchery__v1__vm_request__free_unpacked(req, NULL);
}

/* reuse = snapshot, after a clean lease: restore the pool's snapshot over
 * the used VM (vmp_snap_reset: every guest page dropped, then the same
 * restore as at start-up, with a new seed), tell the supervisor, and take
 * the fresh VM socket it answers with. Returns 0 when we can serve again;
 * -1 when the child must exit (err filled). The old VM socket is closed
 * here: whatever the last client still sends is dropped with it. */
static int reset_for_next_lease(struct child *ch, struct hatch_err *err)
{
	uint64_t t0 = now_ns();
	if (restore_pool_snapshot(ch, true, err) < 0)
		return -1;
	Hatchery__V1__ChildMsg out = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildReset rst = HATCHERY__V1__CHILD_RESET__INIT;
	rst.reset_ns = now_ns() - t0;
	out.body_case = HATCHERY__V1__CHILD_MSG__BODY_RESET;
	out.reset = &rst;
	if (ipc_send_pb(CTRL_FD, &out.base, NULL, 0, false) < 0)
		return hatch_err_set(err, E(INTERNAL), 0, "reset: send ChildReset");
	/* SupLeased of the lease just ended may still be queued ahead of the
	 * answer: skip it. Nothing else is sent to a leased child. */
	uint64_t until = now_ns() + 5000000000ull;
	for (;;) {
		struct pollfd p = { .fd = CTRL_FD, .events = POLLIN };
		int64_t left = (int64_t)(until - now_ns()) / 1000000;
		if (left <= 0)
			return hatch_err_set(err, E(INTERNAL), 0, "reset: no SupVmSocket within 5 s");
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		struct ipc_msg m = { .buf = rx_buf };
		int r = ipc_recv(CTRL_FD, &m, false);
		if (r <= 0)
			return hatch_err_set(err, E(INTERNAL), r < 0 ? -r : 0,
					     "reset: control channel closed");
		Hatchery__V1__SupMsg *msg = hatchery__v1__sup_msg__unpack(NULL, m.len, m.buf);
		bool is_sock = msg && msg->body_case == HATCHERY__V1__SUP_MSG__BODY_VM_SOCKET;
		if (msg)
			hatchery__v1__sup_msg__free_unpacked(msg, NULL);
		if (!is_sock) {
			ipc_msg_close_fds(&m);
			continue;
		}
		if (ipc_msg_expect_fds(&m, 1) < 0)
			return hatch_err_set(err, E(INTERNAL), 0,
					     "reset: SupVmSocket without exactly one fd");
		close(ch->client_fd);
		ch->client_fd = m.fds[0];
		break;
	}
	ch->lease_clean = false;
	ch->resets++;
	return 0;
}

/* The supervisor's first message: our pid as the host sees it. It was sent
 * right after the fork, so it is long there by the time we get here. */
static void read_hello_or_die(struct child *ch)
{
	struct ipc_msg m = { .buf = rx_buf };
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
	struct ipc_msg m = { .buf = rx_buf };
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
		/* Being woken was the point (see server.c); a restore pool
		 * restores now unless the client's first packet beat us. */
		ipc_msg_close_fds(&m);
		restore_on_lease(ch);
		break;
	default:
		ipc_msg_close_fds(&m);
		break;
	}
	hatchery__v1__sup_msg__free_unpacked(msg, NULL);
	return go_on;
}

void vmp_child_main(const struct vmp_spawn *s)
{
	uint64_t t_start = now_ns();
	child_init_or_die(s);
	/* fd_hygiene moved the kvm fd; point our copy of the host at it. */
	struct vmp_kvm_host kvm = *s->kvm;
	kvm.kvm_fd = KVM_FD;
	struct vmp_spawn me = *s;
	me.ctrl_fd = CTRL_FD;
	me.kvm = &kvm;

	static struct child ch; /* big (a call's logs); zeroed, in BSS */
	ch.s = &me;
	ch.client_fd = VM_FD;
	ch.t_start = t_start;
	ch.t_init = now_ns();
	struct hatch_err err = { 0 };
	/* Before the jail: sigaction and timer_create are not on the allowlist
	 * (rt_sigaction must stay off it: see on_sigsys in jail.c). */
	if (vmp_guest_deadline_init(&err) < 0)
		fail_or_die("%s", err.msg);
	/* The jail comes before the VM: KVM_CREATE_VM and everything after it
	 * run jailed (docs/security.md, "Why the VM is built inside"). */
	/* Rootless, the supervisor maps our ids into our user namespace
	 * right after the fork and only then sends SupHello: wait for it
	 * before changing credentials. With root it has long arrived by the
	 * time the VM is built, so it is read then, off the way to ready. */
	bool hello_first = s->jail && (s->jail->flags & VMP_JAIL_USERNS);
	if (hello_first)
		read_hello_or_die(&ch);
	if (s->jail) {
		struct vmp_jail_config j = *s->jail;
		j.report_fd = CTRL_FD;
		j.parent_pidfd = SUP_PIDFD;
		if (vmp_jail_enter(&j, &ch.jail, &err) < 0)
			fail_or_die("jail: %s", err.msg);
	}
	close(SUP_PIDFD);
	if (vmp_vm_create(&kvm, (size_t)s->memory_mib << 20, s->vcpus, &ch.vm, &err) < 0 ||
	    vmp_vm_first_run(&ch.vm, &err) < 0)
		fail_or_die("%s", err.msg);
	/* KVM's worker exists now (on kernels that make one): no task is
	 * created after this, so NPROC can drop to 1 for good (jail.h). */
	if (s->jail && vmp_jail_lower_nproc(&ch.jail, &err) < 0)
		fail_or_die("jail: %s", err.msg);
	/* The child needs /dev/kvm no more: only its VM fds. */
	close(KVM_FD);
	if (s->guest_elf) {
		/* Booted pool: the guest runs to its ready point before we
		 * count as ready (the supervisor validated the ELF already). */
		struct vmp_guest_image img;
		if (vmp_guest_elf_parse(s->guest_elf, s->guest_elf_len, &img, &err) < 0 ||
		    vmp_guest_boot(&ch.vm, &img, BOOT_DEADLINE_MS, &ch.guest, &ch.res, &err) < 0)
			fail_or_die("guest: %s", err.msg);
	}
	if (s->snap_fd >= 0) {
		if (s->prerestore) {
			/* Acquire hands out a VM that is already running. Its
			 * pages are still the file's page-cache pages; one
			 * heartbeat into the guest now takes the faults (and
			 * copy-on-write copies) of the call path that the first
			 * client call would otherwise pay: measured A/B, first
			 * echo p50 ~200 us instead of ~300. */
			if (restore_pool_snapshot(&ch, false, &err) < 0)
				fail_or_die("%s", err.msg);
			if (vmp_guest_heartbeat(&ch.guest, HEARTBEAT_DEADLINE_MS, &ch.res) < 0)
				fail_or_die("restored guest missed its first heartbeat");
		} else {
			ch.restore_pending = true;
		}
	}
	if (!hello_first)
		read_hello_or_die(&ch);
	prefault_request_path();

	Hatchery__V1__ChildMsg out = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildReady ready = HATCHERY__V1__CHILD_READY__INIT;
	ch.t_ready = now_ns();
	ready.setup_ns = ch.t_ready - s->t_fork;
	out.body_case = HATCHERY__V1__CHILD_MSG__BODY_READY;
	out.ready = &ready;
	if (ipc_send_pb(CTRL_FD, &out.base, NULL, 0, false) < 0)
		_exit(1);

	/* Idle until the supervisor hands the VM socket's other end to a
	 * client; from then on the client's requests arrive on client_fd. */
serve:
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = CTRL_FD, .events = POLLIN },
			{ .fd = ch.client_fd, .events = POLLIN },
		};
		int n = poll(p, 2, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* Client first: once leased, its requests are the hot path. */
		if (p[1].revents) {
			if (!serve_client(&ch))
				break;
		}
		if (p[0].revents) {
			if (!serve_ctrl(&ch))
				break;
		}
	}
	/* reuse = snapshot: a lease that ended the ordinary way (Release or
	 * EOF) with the guest alive leaves a VM we can reset. Anything else —
	 * a fault or deadline (guest.dead), a failed or broken restore, the
	 * supervisor gone — ends the child as in single use. */
	if (s->reuse && ch.lease_clean && ch.guest.ready && !ch.guest.dead &&
	    !ch.restore_failed && !ch.restore_broke) {
		if (reset_for_next_lease(&ch, &err) == 0)
			goto serve;
		/* Exit 1 with the reason: the supervisor logs it and replaces
		 * us. Drain the control socket first: closing with unread data
		 * would reset the peer and lose the ChildFailed (see below). */
		Hatchery__V1__ChildMsg fm = HATCHERY__V1__CHILD_MSG__INIT;
		Hatchery__V1__ChildFailed f = HATCHERY__V1__CHILD_FAILED__INIT;
		f.message = err.msg;
		fm.body_case = HATCHERY__V1__CHILD_MSG__BODY_FAILED;
		fm.failed = &f;
		ipc_send_pb(CTRL_FD, &fm.base, NULL, 0, false);
		for (int i = 0; i < 64; i++) {
			struct ipc_msg m = { .buf = rx_buf };
			if (ipc_recv(CTRL_FD, &m, true) <= 0)
				break;
			ipc_msg_close_fds(&m);
		}
		_exit(1);
	}
	/* Lease over (or supervisor gone). Exiting tears the VM down; the
	 * supervisor sees our pidfd and forks a replacement. A failed restore
	 * on lease exits 1: only then does the supervisor read the
	 * ChildFailed we sent (its reaper skips the channel of a clean exit);
	 * ipc_recv delivers it even though we may leave SupLeased unread. */
	if (ch.restore_failed)
		_exit(1);
	_exit(0);
}
