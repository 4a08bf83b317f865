/* requests.c - the VM socket: a leased child's client packets and the
 * reply to each VmRequest (Call, Load, Save, Restore, Ping, Info,
 * Release). See child.h and docs/protocol.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "child/child.h"
#include "hatchery/v1/vm.pb-c.h"
#include "vmsnap.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

void vmp_child_send_error(int fd, uint64_t id, int code, const char *msg)
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
		vmp_child_send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
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

/* The guest's function names for a reply: pointers into ch->guest, valid
 * until the reply is sent. Returns how many. */
static size_t guest_functions(struct child *ch, char *fns[HATCH_FN_MAX])
{
	for (unsigned i = 0; i < ch->guest.n_fn; i++)
		fns[i] = ch->guest.fn[i];
	return ch->guest.n_fn;
}

/* Load{fd}: boot a client's guest in an empty VM, once. The fd is read
 * through a private read-only mapping (mmap is on the allowlist, read is
 * not), which stays until the child exits. */
static int serve_load(struct child *ch, uint64_t id, int fd)
{
	struct hatch_err err = { 0 };
	if (ch->guest.ready || ch->guest.dead) {
		vmp_child_send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "this VM already has a guest; a VM is loaded once");
		return 1;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size > (off_t)VMP_GUEST_MAX_ELF) {
		vmp_child_send_error(ch->client_fd, id, E(INVALID_ARGUMENT),
			   "Load: the fd must be a regular file of 1 byte .. 16 MiB");
		return 1;
	}
	void *elf = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (elf == MAP_FAILED) {
		hatch_err_set(&err, E(INVALID_ARGUMENT), errno, "Load: mmap the guest ELF");
		vmp_child_send_error(ch->client_fd, id, err.code, err.msg);
		return 1;
	}
	struct vmp_guest_image img;
	if (vmp_guest_elf_parse(elf, (size_t)size, &img, &err) < 0) {
		vmp_child_send_error(ch->client_fd, id, err.code, err.msg);
		return 1;
	}
	if (vmp_guest_boot(&ch->vm, &img, BOOT_DEADLINE_MS, &ch->guest, &ch->res, &err) < 0) {
		/* A guest that cannot boot took the VM with it. */
		vmp_child_send_error(ch->client_fd, id, outcome_code(ch->res.outcome) == E(OK) ?
			   E(VM_ERROR) : outcome_code(ch->res.outcome), err.msg);
		return 0;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmLoadReply body = HATCHERY__V1__VM_LOAD_REPLY__INIT;
	char *fns[HATCH_FN_MAX];
	body.n_functions = guest_functions(ch, fns);
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
	if (!ch->lm && (!ch->guest.ready || ch->guest.dead)) {
		vmp_child_send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "Save: no live guest in this VM");
		return 1;
	}
	struct vmp_snap_save_stats st;
	if (ch->lm ? vmp_child_linux_save(ch, fd, &st, &err) < 0
		   : vmp_snap_save(&ch->vm, ch->s->kvm, &ch->guest, NULL, fd, &st, &err) < 0) {
		vmp_child_send_error(ch->client_fd, id, err.code, err.msg);
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
		vmp_child_send_error(ch->client_fd, id, E(FAILED_PRECONDITION),
			   "Restore: this VM already has a guest; restore into an empty VM");
		return 1;
	}
	struct vmp_snap_restore_stats st;
	bool touched = false;
	if (vmp_snap_restore(&ch->vm, ch->s->kvm, fd, &ch->guest, &st, &touched, &err) < 0) {
		vmp_child_send_error(ch->client_fd, id, err.code, err.msg);
		ch->restore_broke = touched;
		return touched ? 0 : 1;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmRestoreReply body = HATCHERY__V1__VM_RESTORE_REPLY__INIT;
	char *fns[HATCH_FN_MAX];
	body.n_functions = guest_functions(ch, fns);
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

/* The restore on lease failed: answer the request with that, and end. */
static int refuse_request(struct child *ch, struct ipc_msg *m)
{
	ipc_msg_close_fds(m);
	Hatchery__V1__VmRequest *req = hatchery__v1__vm_request__unpack(NULL, m->len, m->buf);
	vmp_child_send_error(ch->client_fd, req ? req->id : 0, ch->restore_err_code, ch->restore_err);
	if (req)
		hatchery__v1__vm_request__free_unpacked(req, NULL);
	return 0;
}

/* Info: the VM, the jail as seen from inside, and the child's timings. */
static int serve_info(struct child *ch, uint64_t id)
{
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	Hatchery__V1__VmInfoReply info = HATCHERY__V1__VM_INFO_REPLY__INIT;
	char *fns[HATCH_FN_MAX]; /* VmInfoReply.guest_functions, until the send */
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
	char tail[2048];
	if (ch->lm) {
		info.kernel_release = ch->kernel_release;
		info.guest_nproc = ch->guest_nproc;
		info.linux_boot_ns = ch->linux_boot_ns;
		vmp_linux_console_tail(ch->lm, tail, sizeof(tail), 20);
		info.console_tail = tail;
	}
	if (ch->guest.ready) {
		info.n_guest_functions = guest_functions(ch, fns);
		info.guest_functions = fns;
		info.guest_boot_ns = ch->guest.boot_ns;
	}
	rep.id = id;
	rep.body_case = HATCHERY__V1__VM_REPLY__BODY_INFO;
	rep.info = &info;
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	return 1;
}

int vmp_child_serve_request(struct child *ch, const Hatchery__V1__VmRequest *req,
			    struct ipc_msg *m)
{
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
	/* The request decoded, so its error carries its id (id 0 is only for
	 * what could not be decoded: see vmp_child_serve_client). */
	if (m->nfds != (fd_what ? 1u : 0u)) {
		ipc_msg_close_fds(m);
		vmp_child_send_error(ch->client_fd, req->id, E(UNEXPECTED_FDS),
			   fd_what ? fd_what
				   : "VM requests other than Load, Save and Restore carry no file descriptors");
		return 1;
	}
	if (ch->lm && req->body_case != HATCHERY__V1__VM_REQUEST__BODY_SAVE &&
	    (fd_what || req->body_case == HATCHERY__V1__VM_REQUEST__BODY_CALL)) {
		ipc_msg_close_fds(m);
		vmp_child_send_error(ch->client_fd, req->id, E(FAILED_PRECONDITION),
			   "a Linux VM runs programs (Exec) and files, and saves itself "
			   "(Save); Call, Load and Restore are for kernel-less guests "
			   "(a Linux snapshot restores through a restore pool)");
		return 1;
	}
	if (fd_what) {
		int go = req->body_case == HATCHERY__V1__VM_REQUEST__BODY_LOAD ?
				 serve_load(ch, req->id, m->fds[0]) :
			 req->body_case == HATCHERY__V1__VM_REQUEST__BODY_SAVE ?
				 serve_save(ch, req->id, m->fds[0]) :
				 serve_restore(ch, req->id, m->fds[0]);
		close(m->fds[0]);
		return go;
	}
	Hatchery__V1__VmReply rep = HATCHERY__V1__VM_REPLY__INIT;
	rep.id = req->id;
	Hatchery__V1__VmPingReply ping = HATCHERY__V1__VM_PING_REPLY__INIT;
	Hatchery__V1__VmReleaseReply rel = HATCHERY__V1__VM_RELEASE_REPLY__INIT;
	Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
	int go_on = 1;
	switch (req->body_case) {
	case HATCHERY__V1__VM_REQUEST__BODY_CALL:
		return serve_call(ch, req->id, req->call);
	case HATCHERY__V1__VM_REQUEST__BODY_INFO:
		return serve_info(ch, req->id);
	case HATCHERY__V1__VM_REQUEST__BODY_PING:
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_PING;
		rep.ping = &ping;
		break;
	case HATCHERY__V1__VM_REQUEST__BODY_RELEASE:
		rep.body_case = HATCHERY__V1__VM_REPLY__BODY_RELEASE;
		rep.release = &rel;
		ch->lease_clean = true;
		go_on = 0;
		break;
	default:
		e.code = E(INVALID_ARGUMENT);
		e.message = (char *)"unknown or empty VmRequest body";
		rep.error = &e;
		break;
	}
	ipc_send_pb(ch->client_fd, &rep.base, NULL, 0, false);
	return go_on;
}

int vmp_child_serve_client(struct child *ch)
{
	/* Before any request is looked at: the VM must hold the snapshot. */
	vmp_child_restore_on_lease(ch);
	struct ipc_msg m = { .buf = vmp_child_rx_buf };
	int r = ipc_recv(ch->client_fd, &m, false);
	if (r == 0) {
		ch->lease_clean = true;
		return 0; /* the client hung up: the lease is over */
	}
	/* Errors for a packet that was never decoded carry id 0: one too
	 * large (cut short by the kernel), or one with more fds than
	 * IPC_MAX_FDS (discarded by ipc_recv). Either way the VM serves on. */
	if (r == -EMSGSIZE || r == -ETOOMANYREFS) {
		vmp_child_send_error(ch->client_fd, 0,
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
		vmp_child_send_error(ch->client_fd, 0, E(MALFORMED),
			   "packet did not decode as hatchery.v1.VmRequest");
		return 1;
	}
	int go = vmp_child_serve_request(ch, req, &m);
	hatchery__v1__vm_request__free_unpacked(req, NULL);
	return go;
}
