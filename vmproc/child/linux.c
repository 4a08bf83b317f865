/* linux.c - a Linux child's life between the jail and the exit: boot the
 * kernel to the agent's hello, answer health pings through the agent, and
 * relay a lease's operations between the client and the agent
 * (linux/relay.h has the rules, linux/machine.h the machine).
 *
 * One thread here (the child's main thread) polls the control channel,
 * the client's socket and the machine's eventfds; the vCPUs run in their
 * own threads. Every packet is relayed as it came (the agent speaks the
 * VM protocol's Linux subset), after it was decoded and checked here.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "child/child.h"
#include "hatchery/clock.h"
#include "hatchery/v1/control.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"
#include "vmsnap.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* How long the child waits for the agent before it gives the VM up
 * (DEADLINE_EXCEEDED; the VM ends): an Exec's own timeout plus a grace for
 * the kill and the last output, or for any other operation this long
 * without a frame from the agent. A guest that stole the agent's channel,
 * or a hung agent, then costs one VM and no client waits forever. */
#define AGENT_GRACE_NS (10ull * 1000000000ull)
#define AGENT_IDLE_NS (30ull * 1000000000ull)
#define EXEC_DEFAULT_TIMEOUT_MS 60000u

/* Until the agent's hello, and for the hello itself: how it failed. */
static void boot_failure(struct child *ch, struct hatch_err *err, const char *what)
{
	char tail[1024];
	vmp_linux_console_tail(ch->lm, tail, sizeof(tail), 8);
	hatch_err_set(err, err->code ? err->code : E(GUEST_FAULT), 0,
		      "%s%s%s", what, tail[0] ? "; console's last lines:\n" : "", tail);
}

/* The agent's hello: VmReply{id 0, agent_ready}. */
static int take_hello(struct child *ch, const uint8_t *frame, size_t len,
		      struct hatch_err *err)
{
	Hatchery__V1__VmReply *rep = hatchery__v1__vm_reply__unpack(NULL, len, frame);
	if (!rep || rep->id != 0 || rep->body_case != HATCHERY__V1__VM_REPLY__BODY_AGENT_READY) {
		if (rep)
			hatchery__v1__vm_reply__free_unpacked(rep, NULL);
		return hatch_err_set(err, E(GUEST_FAULT), 0,
				     "agent protocol: the first frame is not the agent's hello");
	}
	snprintf(ch->kernel_release, sizeof(ch->kernel_release), "%s",
		 rep->agent_ready->kernel_release ? rep->agent_ready->kernel_release : "");
	ch->guest_nproc = rep->agent_ready->nproc;
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	return 0;
}

int vmp_child_linux_build(struct child *ch, struct hatch_err *err)
{
	const struct vmp_spawn *s = ch->s;
	struct vmp_linux_config cfg = {
		.kernel = s->kernel, .kernel_len = s->kernel_len,
		.initrd = s->initrd, .initrd_len = s->initrd_len,
		.cmdline_extra = s->cmdline_extra,
		.host_cpuid = s->kvm->cpuid,
		.disk = s->disk_fd >= 0, .disk_fd = s->disk_fd,
	};
	return vmp_linux_create(&ch->vm, &cfg, &ch->lm, err);
}

/* The agent's next whole frame, serving the machine (its vCPUs' exits,
 * the queues' kicks) until it comes or `deadline` (CLOCK_MONOTONIC ns)
 * passes. 1 with *frame (valid until the next call), 0 at the deadline,
 * -1 when the agent broke the channel's framing (err, without the
 * console), -2 when the VM ended or polling failed (err; the machine's
 * message has the console's last lines). */
static int next_agent_frame(struct child *ch, uint64_t deadline, const uint8_t **frame,
			    size_t *len, struct hatch_err *err)
{
	for (;;) {
		int r = vmp_linux_agent_recv(ch->lm, frame, len, err);
		if (r != 0)
			return r;
		uint64_t now = hatch_now_ns();
		if (now >= deadline)
			return 0;
		struct pollfd p[VMP_LINUX_MAX_POLLFDS];
		size_t n = vmp_linux_pollfds(ch->lm, p);
		if (poll(p, n, (int)((deadline - now) / 1000000ull) + 1) < 0 && errno != EINTR) {
			hatch_err_set(err, E(INTERNAL), errno, "poll");
			return -2;
		}
		if (vmp_linux_process(ch->lm, p, n, err) < 0)
			return -2;
	}
}

int vmp_child_linux_boot(struct child *ch, struct hatch_err *err)
{
	uint64_t t0 = hatch_now_ns();
	uint64_t deadline = t0 + (uint64_t)ch->s->boot_timeout_ms * 1000000ull;
	if (vmp_linux_start(ch->lm, err) < 0)
		return -1;
	const uint8_t *frame;
	size_t len;
	int r = next_agent_frame(ch, deadline, &frame, &len, err);
	if (r == -1) {
		boot_failure(ch, err, err->msg);
		return -1;
	}
	if (r < 0)
		return -1;
	if (r == 0) {
		char what[128];
		snprintf(what, sizeof(what),
			 "the guest's agent was not ready within boot_timeout_ms (%u ms)",
			 ch->s->boot_timeout_ms);
		err->code = E(DEADLINE_EXCEEDED);
		boot_failure(ch, err, what);
		return -1;
	}
	if (take_hello(ch, frame, len, err) < 0)
		return -1;
	ch->linux_boot_ns = hatch_now_ns() - t0;
	return 0;
}

static void send_pong(uint64_t seq)
{
	Hatchery__V1__ChildMsg out = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildPong pong = HATCHERY__V1__CHILD_PONG__INIT;
	pong.seq = seq;
	out.body_case = HATCHERY__V1__CHILD_MSG__BODY_PONG;
	out.pong = &pong;
	ipc_send_pb(CTRL_FD, &out.base, NULL, 0, false);
}

/* The supervisor's health ping of an idle VM goes to the agent; the pong
 * follows its answer. A busy or dead agent never answers: the supervisor's
 * health timeout then replaces us. */
static void health_ping(struct child *ch, uint64_t seq)
{
	if (ch->restore_pending) {
		send_pong(seq); /* nothing runs yet: the vmproc is the VM */
		return;
	}
	if (ch->relay.health || ch->relay.id)
		return;
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmPingRequest ping = HATCHERY__V1__VM_PING_REQUEST__INIT;
	req.id = VMP_RELAY_HEALTH_ID;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	req.ping = &ping;
	uint8_t buf[32]; /* packs to 13 bytes: the id's varint, an empty ping */
	if (hatchery__v1__vm_request__get_packed_size(&req) > sizeof(buf))
		return;
	size_t len = hatchery__v1__vm_request__pack(&req, buf);
	if (vmp_linux_agent_send(ch->lm, buf, len) == 0) {
		vmp_relay_health_start(&ch->relay);
		ch->health_seq = seq;
	}
}

/* One agent frame during a lease or idle. Returns 0, or -1 when the agent
 * broke the protocol (err). */
static int agent_frame(struct child *ch, const uint8_t *frame, size_t len, struct hatch_err *err)
{
	Hatchery__V1__VmReply *rep = hatchery__v1__vm_reply__unpack(NULL, len, frame);
	if (!rep)
		return hatch_err_set(err, E(GUEST_FAULT), 0,
				     "agent protocol: a frame of %zu bytes that is no VmReply", len);
	enum vmp_relay_verdict v = vmp_relay_agent(&ch->relay, rep, err);
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	switch (v) {
	case VMP_RELAY_HEALTH:
		send_pong(ch->health_seq);
		return 0;
	case VMP_RELAY_PASS:
		if (ch->relay.body != HATCHERY__V1__VM_REQUEST__BODY_EXEC)
			ch->op_deadline = hatch_now_ns() + AGENT_IDLE_NS;
		ipc_send(ch->client_fd, frame, len, NULL, 0, false);
		return 0;
	case VMP_RELAY_DONE:
		ch->op_deadline = 0;
		/* A client that went away mid-operation loses the rest. */
		ipc_send(ch->client_fd, frame, len, NULL, 0, false);
		return 0;
	default:
		return -1;
	}
}

/* One client packet. Returns 1 to go on, 0 when the lease is over. */
static int client_packet(struct child *ch)
{
	struct ipc_msg m = { .buf = vmp_child_rx_buf };
	int r = ipc_recv(ch->client_fd, &m, false);
	if (r == 0 || (r < 0 && r != -EMSGSIZE && r != -ETOOMANYREFS)) {
		ch->lease_clean = r == 0 || r == -ECONNRESET;
		return 0;
	}
	if (r < 0) {
		vmp_child_send_error(ch->client_fd, 0,
			      r == -EMSGSIZE ? E(MESSAGE_TOO_LARGE) : E(UNEXPECTED_FDS),
			      ipc_strerror(r));
		return 1;
	}
	Hatchery__V1__VmRequest *req = hatchery__v1__vm_request__unpack(NULL, m.len, m.buf);
	if (!req) {
		ipc_msg_close_fds(&m);
		vmp_child_send_error(ch->client_fd, 0, E(MALFORMED),
			      "packet did not decode as hatchery.v1.VmRequest");
		return 1;
	}
	struct hatch_err err = { 0 };
	enum vmp_relay_verdict v = vmp_relay_client(&ch->relay, req, &err);
	int go = 1;
	if (v == VMP_RELAY_LOCAL) {
		/* Ping, Info, Release; Call/Load/Save/Restore refused there. */
		go = vmp_child_serve_request(ch, req, &m);
	} else if (m.nfds) {
		ipc_msg_close_fds(&m);
		vmp_child_send_error(ch->client_fd, req->id, E(UNEXPECTED_FDS),
			      "Linux guest requests carry no file descriptors");
		if (v == VMP_RELAY_FORWARD)
			ch->relay.id = 0; /* never reached the agent */
	} else if (v == VMP_RELAY_REJECT && req->body_case == HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK &&
		   ch->relay.id && req->id == ch->relay.id) {
		/* More bytes than the WriteFile announced: the client is out
		 * of step with its own operation, and the agent still waits
		 * for the rest. No later reply could be told apart: the lease
		 * ends here, with the reason. */
		vmp_child_send_error(ch->client_fd, req->id, err.code, err.msg);
		go = 0;
	} else if (v == VMP_RELAY_REJECT) {
		vmp_child_send_error(ch->client_fd, req->id, err.code, err.msg);
	} else {
		/* FORWARD: the room was there when we chose to read (see
		 * serve_lease's poll), a packet is at most one frame. */
		int s = vmp_linux_agent_send(ch->lm, m.buf, m.len);
		uint64_t now = hatch_now_ns();
		if (req->body_case == HATCHERY__V1__VM_REQUEST__BODY_EXEC) {
			uint32_t t = req->exec->timeout_ms ? req->exec->timeout_ms
							   : EXEC_DEFAULT_TIMEOUT_MS;
			ch->op_deadline = now + (uint64_t)t * 1000000ull + AGENT_GRACE_NS;
		} else {
			ch->op_deadline = now + AGENT_IDLE_NS;
		}
		if (s < 0) {
			vmp_child_send_error(ch->client_fd, req->id, E(INTERNAL),
				      "the agent channel's outbox is full");
			go = 0;
		}
	}
	hatchery__v1__vm_request__free_unpacked(req, NULL);
	return go;
}

/* Control packets while a Linux VM is idle or leased. Returns 1 to go on,
 * 0 when the supervisor is gone, -1 when the restore on lease failed. */
static int ctrl_packet(struct child *ch)
{
	struct ipc_msg m = { .buf = vmp_child_rx_buf };
	int r = ipc_recv(CTRL_FD, &m, false);
	if (r <= 0)
		return 0;
	ipc_msg_close_fds(&m);
	Hatchery__V1__SupMsg *msg = hatchery__v1__sup_msg__unpack(NULL, m.len, m.buf);
	if (!msg)
		return 0;
	if (msg->body_case == HATCHERY__V1__SUP_MSG__BODY_PING)
		health_ping(ch, msg->ping->seq);
	int leased = msg->body_case == HATCHERY__V1__SUP_MSG__BODY_LEASED;
	hatchery__v1__sup_msg__free_unpacked(msg, NULL);
	/* A restore pool restores on lease unless it did before ready. */
	if (leased && ch->restore_pending) {
		vmp_child_restore_on_lease(ch);
		if (ch->restore_failed)
			return -1;
	}
	return 1;
}

void vmp_child_linux_serve(struct child *ch)
{
	struct hatch_err err = { 0 };
	for (;;) {
		struct pollfd p[2 + VMP_LINUX_MAX_POLLFDS];
		p[0] = (struct pollfd){ .fd = CTRL_FD, .events = POLLIN };
		/* Read the client only when its next packet can go somewhere:
		 * no operation in flight (or a WriteFile's data), and room in
		 * the agent's outbox for a whole packet. Otherwise it waits in
		 * the socket: that is the client's back-pressure. */
		bool want = vmp_relay_wants_client(&ch->relay) &&
			    vmp_linux_agent_room(ch->lm) >= IPC_MAX_MSG + 4;
		p[1] = (struct pollfd){ .fd = want ? ch->client_fd : -1, .events = POLLIN };
		size_t n = vmp_linux_pollfds(ch->lm, p + 2);
		int ms = -1;
		if (ch->op_deadline) {
			uint64_t now = hatch_now_ns();
			if (now >= ch->op_deadline) {
				hatch_err_set(&err, E(DEADLINE_EXCEEDED), 0,
					      "the guest's agent did not answer in time (operation %llu); "
					      "the VM is given up",
					      (unsigned long long)ch->relay.id);
				break;
			}
			ms = (int)((ch->op_deadline - now) / 1000000ull) + 1;
		}
		if (poll(p, 2 + n, ms) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (vmp_linux_process(ch->lm, p + 2, n, &err) < 0)
			break;
		const uint8_t *frame;
		size_t len;
		int r;
		while ((r = vmp_linux_agent_recv(ch->lm, &frame, &len, &err)) > 0)
			if (agent_frame(ch, frame, len, &err) < 0) {
				r = -1;
				break;
			}
		if (r < 0)
			break;
		if (p[1].revents && ch->restore_pending) {
			/* The client's first packet beat SupLeased. */
			vmp_child_restore_on_lease(ch);
			if (ch->restore_failed) {
				hatch_err_set(&err, ch->restore_err_code, 0, "%s", ch->restore_err);
				break;
			}
		}
		if (p[1].revents && !client_packet(ch))
			return;
		if (p[0].revents) {
			int c = ctrl_packet(ch);
			if (c == 0)
				return;
			if (c < 0) {
				hatch_err_set(&err, ch->restore_err_code, 0, "%s", ch->restore_err);
				break;
			}
		}
	}
	/* The VM ended under a lease or while idle: say why to whoever
	 * holds it (the operation in flight gets the error with its id),
	 * and to the supervisor. */
	vmp_child_send_error(ch->client_fd, ch->relay.id, err.code ? err.code : E(GUEST_FAULT), err.msg);
	if (!ch->restore_failed) /* restore.c has said it */
		vmp_child_send_failed(err.msg);
	_exit(1);
}

/* ---- snapshots ----------------------------------------------------------- */

/* Save{fd} of a Linux VM, between operations: the vCPUs stop, the machine's
 * KVM state, devices and memory go to the file, the vCPUs go on. Returns
 * 0, or -1 with err (child.h). */
int vmp_child_linux_save(struct child *ch, int fd, struct vmp_snap_save_stats *st,
			 struct hatch_err *err)
{
	if (ch->relay.id || ch->relay.health)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "Save: operation %llu is in flight; save between operations",
				     (unsigned long long)(ch->relay.id ? ch->relay.id
								       : VMP_RELAY_HEALTH_ID));
	if (vmp_linux_pause(ch->lm, err) < 0)
		return -1;
	static struct snap_devices dev; /* ~2 KiB: off the stack */
	int r = vmp_linux_devices_save(ch->lm, &dev, err);
	if (r == 0)
		r = vmp_snap_save(&ch->vm, ch->s->kvm, NULL, &dev, fd, st, err);
	vmp_linux_resume(ch->lm);
	return r;
}

/* The agent's answer to the host's AgentResume (the relay checks it): its
 * agent_ready, with the resume's id. */
static int take_resumed(struct child *ch, const uint8_t *frame, size_t len,
			struct hatch_err *err)
{
	Hatchery__V1__VmReply *rep = hatchery__v1__vm_reply__unpack(NULL, len, frame);
	if (!rep)
		return hatch_err_set(err, E(GUEST_FAULT), 0,
				     "agent protocol: a frame of %zu bytes that is no VmReply", len);
	enum vmp_relay_verdict v = vmp_relay_agent(&ch->relay, rep, err);
	if (v == VMP_RELAY_RESUMED) {
		snprintf(ch->kernel_release, sizeof(ch->kernel_release), "%s",
			 rep->agent_ready->kernel_release ? rep->agent_ready->kernel_release
							  : "");
		ch->guest_nproc = rep->agent_ready->nproc;
	} else if (v != VMP_RELAY_RESUME_FAILED && v != VMP_RELAY_VIOLATION) {
		hatch_err_set(err, E(GUEST_FAULT), 0,
			      "agent protocol: a frame that does not answer the resume");
	}
	hatchery__v1__vm_reply__free_unpacked(rep, NULL);
	return v == VMP_RELAY_RESUMED ? 0 : -1;
}

/* One AgentResume (the host's wall clock now, `n` bytes of fresh entropy)
 * and the agent's answer within the deadline. */
static int resume_once(struct child *ch, size_t n, uint64_t deadline, struct hatch_err *err)
{
	uint8_t entropy[64];
	for (size_t got = 0; got < n;) {
		ssize_t r = getrandom(entropy + got, n - got, 0);
		if (r < 0 && errno != EINTR)
			return hatch_err_set(err, E(INTERNAL), errno,
					     "getrandom: entropy for the restored guest");
		got += r > 0 ? (size_t)r : 0;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmAgentResume res = HATCHERY__V1__VM_AGENT_RESUME__INIT;
	res.realtime_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	res.entropy.data = entropy;
	res.entropy.len = n;
	res.generation = ch->resets + 1;
	req.id = VMP_RELAY_RESUME_ID;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME;
	req.agent_resume = &res;
	uint8_t buf[256];
	if (hatchery__v1__vm_request__get_packed_size(&req) > sizeof(buf))
		return hatch_err_set(err, E(INTERNAL), 0, "resume frame too large");
	size_t len = hatchery__v1__vm_request__pack(&req, buf);
	explicit_bzero(entropy, sizeof(entropy));
	int sent = vmp_linux_agent_send(ch->lm, buf, len);
	explicit_bzero(buf, sizeof(buf));
	if (sent < 0)
		return hatch_err_set(err, E(INTERNAL), 0, "the agent channel takes no frame");
	vmp_relay_resume_start(&ch->relay);
	const uint8_t *frame;
	size_t flen;
	int r = next_agent_frame(ch, deadline, &frame, &flen, err);
	if (r < 0)
		return -1;
	if (r == 0)
		return hatch_err_set(err, E(DEADLINE_EXCEEDED), 0,
				     "the restored guest's agent did not answer within "
				     "boot_timeout_ms (%u ms)", ch->s->boot_timeout_ms);
	return take_resumed(ch, frame, flen, err);
}

/* A resume whose answer took longer than this set the guest's clock that
 * much behind (the time it carries is the host's when it was sent, and a
 * just-restored guest may take a while to run its agent, seconds under an
 * emulator): it is sent again, now to an agent that is awake. */
#define RESUME_RTT_OK_NS (20ull * 1000000ull)
#define RESUME_TRIES 4

/* Tell the restored guest's agent what changed under it: the host's wall
 * clock (the guest's stood still since the save) and fresh entropy for
 * its kernel's RNG (every clone would otherwise draw the same bytes), and
 * wait for its answer within boot_timeout_ms. docs/snapshot.md, "Linux
 * guests". */
static int agent_resume(struct child *ch, struct hatch_err *err)
{
	uint64_t deadline = hatch_now_ns() + (uint64_t)ch->s->boot_timeout_ms * 1000000ull;
	for (int i = 0; i < RESUME_TRIES; i++) {
		uint64_t t0 = hatch_now_ns();
		if (resume_once(ch, i == 0 ? 64 : 32, deadline, err) < 0)
			return -1;
		if (hatch_now_ns() - t0 <= RESUME_RTT_OK_NS)
			break;
	}
	return 0;
}

int vmp_child_linux_restore(struct child *ch, int fd, bool reset, bool *touched,
			    struct hatch_err *err)
{
	*touched = false;
	struct snap_image img;
	if (vmp_snap_open(&ch->vm, ch->s->kvm, fd, &img, err) < 0)
		return -1;
	int r = -1;
	struct vmp_snap_restore_stats st;
	if (!img.st.devices) {
		hatch_err_set(err, E(FAILED_PRECONDITION), 0,
			      "a snapshot of a kernel-less guest does not restore into a Linux VM");
		goto out;
	}
	if (vmp_linux_devices_check(img.st.devices, err) < 0)
		goto out;
	if (reset) {
		*touched = true;
		if (vmp_linux_pause(ch->lm, err) < 0 || vmp_snap_drop_ram(&ch->vm, err) < 0)
			goto out;
	}
	if (vmp_snap_apply(&ch->vm, fd, &img, &st, touched, err) < 0 ||
	    vmp_linux_devices_restore(ch->lm, img.st.devices, err) < 0)
		goto out;
	ch->relay = (struct vmp_relay){ 0 };
	ch->op_deadline = 0;
	vmp_linux_resume(ch->lm);
	vmp_linux_kick(ch->lm);
	r = agent_resume(ch, err);
out:
	snap_image_free(&img);
	return r;
}
