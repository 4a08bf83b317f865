/* client.c - synchronous client for hatcheryd and leased VMs. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/client.h"
#include "hatchery/ipc.h"

struct hatch_client {
	int fd;
	uint64_t next_id;
	unsigned timeout_ms;
	uint8_t buf[IPC_MAX_MSG];
};

#define E(x) HATCHERY__V1__ERROR_CODE__##x

int hatch_connect(const char *path, struct hatch_client **out,
		  struct hatch_err *err)
{
	if (!path)
		path = getenv("HATCHERY_SOCKET");
	if (!path || !*path)
		path = HATCH_DEFAULT_SOCKET;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "socket path too long: %s", path);
	strcpy(sa.sun_path, path);

	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return hatch_err_set(err, E(UNAVAILABLE), errno,
				     "connect to hatcheryd at %s", path);
	struct hatch_client *c = calloc(1, sizeof(*c));
	if (!c)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "hatch_connect");
	c->fd = steal_fd(&fd);
	c->next_id = 1;
	*out = c;
	return 0;
}

void hatch_close(struct hatch_client *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

void hatch_set_timeout(struct hatch_client *c, unsigned ms)
{
	c->timeout_ms = ms;
}

void hatch_free(void *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

/* Wait for the socket to be readable for at most ms (0 = forever). */
static int wait_readable(int fd, unsigned ms, struct hatch_err *err)
{
	if (!ms)
		return 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	for (;;) {
		int r = poll(&p, 1, (int)ms);
		if (r > 0)
			return 0;
		if (r == 0)
			return hatch_err_set(err, E(UNAVAILABLE), 0,
					     "no reply within %u ms", ms);
		if (errno != EINTR)
			return hatch_err_set(err, E(INTERNAL), errno, "poll");
	}
}

/* Send `req` with the n_send fds in send_fds (SCM_RIGHTS; they stay the
 * caller's), receive one packet into buf and decode it with `desc`. A reply
 * that carries exactly one fd hands it to *fd_out when fd_out is not NULL
 * (left alone otherwise: the caller starts it at -1 and checks); every
 * other fd received is closed. */
static int roundtrip(int fd, uint8_t *buf, unsigned timeout_ms,
		     const ProtobufCMessage *req, const int *send_fds, size_t n_send,
		     const ProtobufCMessageDescriptor *desc,
		     ProtobufCMessage **reply, int *fd_out,
		     struct hatch_err *err)
{
	int r = ipc_send_pb(fd, req, send_fds, n_send, false);
	if (r == -EMSGSIZE)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "request packs to more than one %d-byte packet",
				     IPC_MAX_MSG);
	if (r < 0)
		return hatch_err_set(err, E(UNAVAILABLE), -r, "send request");
	if (wait_readable(fd, timeout_ms, err) < 0)
		return -1;
	struct ipc_msg m = { .buf = buf };
	r = ipc_recv(fd, &m, false);
	if (r == 0)
		return hatch_err_set(err, E(UNAVAILABLE), 0,
				     "connection closed by peer");
	if (r < 0)
		return hatch_err_set(err, E(UNAVAILABLE), 0, "receive reply: %s",
				     ipc_strerror(r));
	ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, m.len, m.buf);
	if (!msg) {
		ipc_msg_close_fds(&m);
		return hatch_err_set(err, E(MALFORMED), 0,
				     "reply did not decode as %s", desc->name);
	}
	if (fd_out && m.nfds == 1) {
		*fd_out = ipc_msg_take_fd(&m, 0);
	}
	ipc_msg_close_fds(&m);
	*reply = msg;
	return 0;
}

/* Hand the reply's body to the caller through `out` (NULL: drop it) and
 * free the envelope. A macro so the body's type is checked at each use. */
#define TAKE_BODY(rep, field, out, not_set)                                    \
	do {                                                                   \
		if (out) {                                                     \
			*(out) = (rep)->field;                                 \
			(rep)->field = NULL;                                   \
			(rep)->body_case = (not_set);                          \
		}                                                              \
		hatch_free(rep);                                               \
	} while (0)

/* An Error reply as a hatch_err. AGENT_ERROR carries the guest's errno:
 * its name goes into the message, for people (the agent's text is the
 * guest's strerror, which a log reader cannot grep by constant), and the
 * number into sys_errno, for programs. Linux numbers errnos the same on
 * either side of the VM, so the host's table names the guest's. */
static int reply_error(const Hatchery__V1__Error *e, struct hatch_err *err)
{
	if (e->code != E(AGENT_ERROR) || !e->guest_errno)
		return hatch_err_set(err, e->code, 0, "%s", e->message);
	const char *name = strerrorname_np((int)e->guest_errno);
	hatch_err_set(err, e->code, 0, "%s (guest errno %u %s)", e->message,
		      e->guest_errno, name ? name : "unknown");
	if (err)
		err->sys_errno = (int)e->guest_errno;
	return -1;
}

/* Common reply handling: Error -> hatch_err; body case must match. */
static int check_reply(const Hatchery__V1__Error *e, int body_case, int want_case,
		       const char *what, struct hatch_err *err)
{
	if (e && e->code != E(OK))
		return reply_error(e, err);
	if (body_case != want_case)
		return hatch_err_set(err, E(MALFORMED), 0,
				     "%s: reply carries the wrong body", what);
	return 0;
}

static int sup_call(struct hatch_client *c, Hatchery__V1__Request *req,
		    int want_case, Hatchery__V1__Reply **out, int *fd_out,
		    unsigned extra_ms, struct hatch_err *err)
{
	req->id = c->next_id++;
	Hatchery__V1__Reply *rep = NULL;
	unsigned to = c->timeout_ms ? c->timeout_ms + extra_ms : 0;
	if (roundtrip(c->fd, c->buf, to, &req->base, NULL, 0,
		      &hatchery__v1__reply__descriptor, (ProtobufCMessage **)&rep,
		      fd_out, err) < 0)
		return -1;
	if (rep->id != req->id) {
		hatch_free(rep);
		return hatch_err_set(err, E(MALFORMED), 0,
				     "reply id %llu does not match request %llu",
				     (unsigned long long)rep->id,
				     (unsigned long long)req->id);
	}
	if (check_reply(rep->error, rep->body_case, want_case,
			"hatcheryd", err) < 0) {
		hatch_free(rep);
		return -1;
	}
	*out = rep;
	return 0;
}

int hatch_ping(struct hatch_client *c, Hatchery__V1__PingReply **out,
	       struct hatch_err *err)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__PingRequest body = HATCHERY__V1__PING_REQUEST__INIT;
	req.body_case = HATCHERY__V1__REQUEST__BODY_PING;
	req.ping = &body;
	Hatchery__V1__Reply *rep = NULL;
	if (sup_call(c, &req, HATCHERY__V1__REPLY__BODY_PING, &rep, NULL, 0,
		     err) < 0)
		return -1;
	TAKE_BODY(rep, ping, out, HATCHERY__V1__REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_acquire(struct hatch_client *c, const char *pool,
		  uint32_t deadline_ms, int *vm_fd,
		  Hatchery__V1__AcquireReply **info, struct hatch_err *err)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__AcquireRequest body = HATCHERY__V1__ACQUIRE_REQUEST__INIT;
	body.pool = (char *)pool;
	body.deadline_ms = deadline_ms;
	req.body_case = HATCHERY__V1__REQUEST__BODY_ACQUIRE;
	req.acquire = &body;
	Hatchery__V1__Reply *rep = NULL;
	_cleanup_close_ int fd = -1;
	if (sup_call(c, &req, HATCHERY__V1__REPLY__BODY_ACQUIRE, &rep, &fd,
		     deadline_ms, err) < 0)
		return -1;
	if (fd < 0) {
		hatch_free(rep);
		return hatch_err_set(err, E(MALFORMED), 0,
				     "AcquireReply carried no fd");
	}
	TAKE_BODY(rep, acquire, info, HATCHERY__V1__REPLY__BODY__NOT_SET);
	*vm_fd = steal_fd(&fd);
	return 0;
}

int hatch_status(struct hatch_client *c, Hatchery__V1__StatusReply **out,
		 struct hatch_err *err)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__StatusRequest body = HATCHERY__V1__STATUS_REQUEST__INIT;
	req.body_case = HATCHERY__V1__REQUEST__BODY_STATUS;
	req.status = &body;
	Hatchery__V1__Reply *rep = NULL;
	if (sup_call(c, &req, HATCHERY__V1__REPLY__BODY_STATUS, &rep, NULL, 0,
		     err) < 0)
		return -1;
	TAKE_BODY(rep, status, out, HATCHERY__V1__REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_stats(struct hatch_client *c, Hatchery__V1__StatsReply **out,
		struct hatch_err *err)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__StatsRequest body = HATCHERY__V1__STATS_REQUEST__INIT;
	req.body_case = HATCHERY__V1__REQUEST__BODY_STATS;
	req.stats = &body;
	Hatchery__V1__Reply *rep = NULL;
	if (sup_call(c, &req, HATCHERY__V1__REPLY__BODY_STATS, &rep, NULL, 0,
		     err) < 0)
		return -1;
	TAKE_BODY(rep, stats, out, HATCHERY__V1__REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_reload(struct hatch_client *c, Hatchery__V1__ReloadReply **out,
		 struct hatch_err *err)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__ReloadRequest body = HATCHERY__V1__RELOAD_REQUEST__INIT;
	req.body_case = HATCHERY__V1__REQUEST__BODY_RELOAD;
	req.reload = &body;
	Hatchery__V1__Reply *rep = NULL;
	if (sup_call(c, &req, HATCHERY__V1__REPLY__BODY_RELOAD, &rep, NULL, 0,
		     err) < 0)
		return -1;
	TAKE_BODY(rep, reload, out, HATCHERY__V1__REPLY__BODY__NOT_SET);
	return 0;
}

/* VM calls have no client object to own a receive buffer. A fresh 64 KiB
 * per call would be returned to the kernel by free() and page-faulted in
 * again on the next call; a per-thread buffer is not, and the key's
 * destructor frees it when its thread exits. */
static pthread_key_t rx_key;
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_key_init(void)
{
	pthread_key_create(&rx_key, free);
}

static uint8_t *vm_rx_buf(void)
{
	pthread_once(&rx_once, rx_key_init);
	uint8_t *b = pthread_getspecific(rx_key);
	if (!b && (b = malloc(IPC_MAX_MSG)) && pthread_setspecific(rx_key, b) != 0) {
		free(b);
		b = NULL;
	}
	return b;
}

/* Ids of VM requests, for all sockets of the process: unique per socket
 * is all the protocol asks, and one counter is simplest to keep so. */
static _Atomic uint64_t vm_next_id = 1;

static int vm_call_fds(int vm_fd, Hatchery__V1__VmRequest *req, const int *fds,
		       size_t nfds, int want_case, Hatchery__V1__VmReply **out,
		       struct hatch_err *err)
{
	uint8_t *buf = vm_rx_buf();
	if (!buf)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "vm call");
	req->id = vm_next_id++;
	Hatchery__V1__VmReply *rep = NULL;
	if (roundtrip(vm_fd, buf, 0, &req->base, fds, nfds,
		      &hatchery__v1__vm_reply__descriptor,
		      (ProtobufCMessage **)&rep, NULL, err) < 0)
		return hatch_err_wrap(err, "vm");
	if (rep->id != req->id) {
		hatch_free(rep);
		return hatch_err_set(err, E(MALFORMED), 0,
				     "vm: reply id %llu does not match request %llu",
				     (unsigned long long)rep->id,
				     (unsigned long long)req->id);
	}
	if (check_reply(rep->error, rep->body_case, want_case, "vm", err) < 0) {
		hatch_free(rep);
		return -1;
	}
	*out = rep;
	return 0;
}

static int vm_call(int vm_fd, Hatchery__V1__VmRequest *req, int want_case,
		   Hatchery__V1__VmReply **out, struct hatch_err *err)
{
	return vm_call_fds(vm_fd, req, NULL, 0, want_case, out, err);
}

int hatch_vm_ping(int vm_fd, struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmPingRequest body = HATCHERY__V1__VM_PING_REQUEST__INIT;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	req.ping = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call(vm_fd, &req, HATCHERY__V1__VM_REPLY__BODY_PING, &rep, err) < 0)
		return -1;
	hatch_free(rep);
	return 0;
}

int hatch_vm_info(int vm_fd, Hatchery__V1__VmInfoReply **out,
		  struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmInfoRequest body = HATCHERY__V1__VM_INFO_REQUEST__INIT;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_INFO;
	req.info = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call(vm_fd, &req, HATCHERY__V1__VM_REPLY__BODY_INFO, &rep, err) < 0)
		return -1;
	TAKE_BODY(rep, info, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_call(int vm_fd, const char *function, const void *payload,
		  size_t len, uint32_t deadline_ms,
		  Hatchery__V1__VmCallReply **out, struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmCallRequest body = HATCHERY__V1__VM_CALL_REQUEST__INIT;
	body.function = (char *)function;
	body.payload.data = (uint8_t *)payload;
	body.payload.len = len;
	body.deadline_ms = deadline_ms;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_CALL;
	req.call = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call(vm_fd, &req, HATCHERY__V1__VM_REPLY__BODY_CALL, &rep, err) < 0)
		return -1;
	TAKE_BODY(rep, call, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_load(int vm_fd, int elf_fd, Hatchery__V1__VmLoadReply **out,
		  struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmLoadRequest body = HATCHERY__V1__VM_LOAD_REQUEST__INIT;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_LOAD;
	req.load = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call_fds(vm_fd, &req, &elf_fd, 1, HATCHERY__V1__VM_REPLY__BODY_LOAD, &rep,
			err) < 0)
		return -1;
	TAKE_BODY(rep, load, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_save(int vm_fd, int out_fd, Hatchery__V1__VmSaveReply **out,
		  struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmSaveRequest body = HATCHERY__V1__VM_SAVE_REQUEST__INIT;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_SAVE;
	req.save = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call_fds(vm_fd, &req, &out_fd, 1, HATCHERY__V1__VM_REPLY__BODY_SAVE, &rep,
			err) < 0)
		return -1;
	TAKE_BODY(rep, save, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_restore(int vm_fd, int snap_fd, Hatchery__V1__VmRestoreReply **out,
		     struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmRestoreRequest body = HATCHERY__V1__VM_RESTORE_REQUEST__INIT;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_RESTORE;
	req.restore = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call_fds(vm_fd, &req, &snap_fd, 1, HATCHERY__V1__VM_REPLY__BODY_RESTORE,
			&rep, err) < 0)
		return -1;
	TAKE_BODY(rep, restore, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_release(int vm_fd, struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmReleaseRequest body = HATCHERY__V1__VM_RELEASE_REQUEST__INIT;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_RELEASE;
	req.release = &body;
	Hatchery__V1__VmReply *rep = NULL;
	int r = vm_call(vm_fd, &req, HATCHERY__V1__VM_REPLY__BODY_RELEASE, &rep, err);
	close(vm_fd);
	if (r < 0)
		return -1;
	hatch_free(rep);
	return 0;
}

/* ---- Linux guests: the agent's operations -------------------------------- */

#define WRITE_FILE_MAX ((uint64_t)1 << 30)   /* vm.proto: WriteFile at most 1 GiB */
#define READ_FILE_DEFAULT ((uint64_t)64 << 20) /* vm.proto: max_size 0 = 64 MiB */
/* WriteFile packets are filled to this, not to IPC_MAX_MSG: the child
 * relays each request to the agent, and a relay that re-encodes it (with
 * an id of its own, say) must not find it grown past the agent's 64 KiB
 * frame. 64 bytes cover any envelope's varints. */
#define WRITE_PKT_MAX (IPC_MAX_MSG - 64)

/* A streaming operation failed in a way that leaves the socket out of step
 * with the VM (client.h, "Streaming calls"): end the lease, so that no
 * later call reads this operation's leftovers as its own reply. */
static int vm_out_of_step(int vm_fd)
{
	shutdown(vm_fd, SHUT_RDWR);
	return -1;
}

/* vm_recv()'s results besides 0. */
enum { VM_ERROR_REPLY = -1, VM_BROKEN = -2 };

/* Receive the next reply of operation `id`. 0 with *out set; VM_ERROR_REPLY
 * when the VM answered with an Error (the operation is over, the socket in
 * step); VM_BROKEN for anything that leaves it out of step: EOF, a packet
 * that does not decode, a reply with another id. An id-0 error is the VM
 * saying it could not decode one of our packets: its words are kept, but
 * which packet it was is unknowable, so that is VM_BROKEN too. */
static int vm_recv(int vm_fd, uint8_t *buf, uint64_t id, const char *what,
		   Hatchery__V1__VmReply **out, struct hatch_err *err)
{
	struct ipc_msg m = { .buf = buf };
	int r = ipc_recv(vm_fd, &m, false);
	if (r == 0) {
		hatch_err_set(err, E(UNAVAILABLE), 0,
			      "%s: the VM closed the connection", what);
		return VM_BROKEN;
	}
	if (r < 0) {
		hatch_err_set(err, E(UNAVAILABLE), 0, "%s: receive reply: %s",
			      what, ipc_strerror(r));
		return VM_BROKEN;
	}
	ipc_msg_close_fds(&m); /* no reply of these operations carries fds */
	Hatchery__V1__VmReply *rep = (Hatchery__V1__VmReply *)protobuf_c_message_unpack(
		&hatchery__v1__vm_reply__descriptor, NULL, m.len, m.buf);
	if (!rep) {
		hatch_err_set(err, E(MALFORMED), 0,
			      "%s: reply did not decode as hatchery.v1.VmReply", what);
		return VM_BROKEN;
	}
	bool has_error = rep->error && rep->error->code != E(OK);
	if (rep->id != id) {
		if (rep->id == 0 && has_error) {
			reply_error(rep->error, err);
			hatch_err_wrap(err, "%s: the VM could not read a request", what);
		} else {
			hatch_err_set(err, E(MALFORMED), 0,
				      "%s: reply id %llu does not match request %llu",
				      what, (unsigned long long)rep->id,
				      (unsigned long long)id);
		}
		hatch_free(rep);
		return VM_BROKEN;
	}
	if (has_error) {
		reply_error(rep->error, err);
		hatch_free(rep);
		return VM_ERROR_REPLY;
	}
	*out = rep;
	return 0;
}

/* A reply whose body is not one this operation can have at this point. */
static int vm_unexpected(int vm_fd, Hatchery__V1__VmReply *rep, const char *what,
			 struct hatch_err *err)
{
	hatch_err_set(err, E(MALFORMED), 0,
		      "%s: unexpected reply body (field %d)", what,
		      (int)rep->body_case);
	hatch_free(rep);
	return vm_out_of_step(vm_fd);
}

/* Send the first packet of an operation. Nothing is in flight yet if this
 * fails (a SOCK_SEQPACKET send is all or nothing), so the socket stays in
 * step. */
static int vm_send_first(int vm_fd, Hatchery__V1__VmRequest *req, const char *what,
			 struct hatch_err *err)
{
	int r = ipc_send_pb(vm_fd, &req->base, NULL, 0, false);
	if (r == -EMSGSIZE)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "%s: the request packs to more than one %d-byte packet",
				     what, IPC_MAX_MSG);
	if (r < 0)
		return hatch_err_set(err, E(UNAVAILABLE), -r, "%s: send request", what);
	return 0;
}

int hatch_vm_exec(int vm_fd, const struct hatch_exec *x,
		  hatch_output_fn *on_output, void *ctx,
		  Hatchery__V1__VmExecReply **out, struct hatch_err *err)
{
	if (!x || !x->argc || !x->argv)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "exec: empty argv");
	uint8_t *buf = vm_rx_buf();
	if (!buf)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "exec");
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmExecRequest body = HATCHERY__V1__VM_EXEC_REQUEST__INIT;
	/* protobuf-c's repeated strings are char **; they are only read. */
	body.n_argv = x->argc;
	body.argv = (char **)x->argv;
	body.n_env = x->env ? x->envc : 0;
	body.env = (char **)x->env;
	body.cwd = (char *)(x->cwd ? x->cwd : "");
	body.stdin.data = (uint8_t *)x->stdin_data;
	body.stdin.len = x->stdin_data ? x->stdin_len : 0;
	body.timeout_ms = x->timeout_ms;
	body.output_limit = x->output_limit;
	body.uid = x->uid;
	body.gid = x->gid;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_EXEC;
	req.exec = &body;
	req.id = vm_next_id++;
	if (vm_send_first(vm_fd, &req, "exec", err) < 0)
		return -1;

	for (;;) {
		Hatchery__V1__VmReply *rep = NULL;
		int r = vm_recv(vm_fd, buf, req.id, "exec", &rep, err);
		if (r == VM_ERROR_REPLY)
			return -1;
		if (r < 0)
			return vm_out_of_step(vm_fd);
		if (rep->body_case == HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT &&
		    rep->exec_output) {
			Hatchery__V1__VmExecOutput *o = rep->exec_output;
			if (o->stream != HATCH_STDOUT && o->stream != HATCH_STDERR) {
				hatch_err_set(err, E(MALFORMED), 0,
					      "exec: output on unknown stream %d",
					      (int)o->stream);
				hatch_free(rep);
				return vm_out_of_step(vm_fd);
			}
			if (on_output && o->data.len)
				on_output(ctx, (int)o->stream, o->data.data, o->data.len);
			hatch_free(rep);
			continue;
		}
		if (rep->body_case == HATCHERY__V1__VM_REPLY__BODY_EXEC && rep->exec) {
			TAKE_BODY(rep, exec, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
			return 0;
		}
		return vm_unexpected(vm_fd, rep, "exec", err);
	}
}

static int write_full(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Set *data's length to the most bytes, at most `want`, with which `msg`
 * (which holds *data) still packs into WRITE_PKT_MAX bytes. Shrinking a
 * bytes field by k shrinks the packed message by at least k (length
 * varints only get shorter), so one correction is exact. */
static size_t fit_chunk(const ProtobufCMessage *msg, ProtobufCBinaryData *data,
			size_t want)
{
	data->len = want;
	size_t sz = protobuf_c_message_get_packed_size(msg);
	if (sz > WRITE_PKT_MAX) {
		size_t over = sz - WRITE_PKT_MAX;
		data->len = over < want ? want - over : 0;
	}
	return data->len;
}

int hatch_vm_write_file(int vm_fd, const char *path, uint32_t mode,
			uint32_t uid, uint32_t gid, int src_fd, uint64_t size,
			Hatchery__V1__VmWriteFileReply **out,
			struct hatch_err *err)
{
	static const char what[] = "write_file";
	if (size > WRITE_FILE_MAX)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "%s %s: %llu bytes, more than 1 GiB", what, path,
				     (unsigned long long)size);
	uint8_t *rx = vm_rx_buf();
	_cleanup_free_ uint8_t *data = malloc(IPC_MAX_MSG);
	_cleanup_free_ uint8_t *pkt = malloc(IPC_MAX_MSG);
	if (!rx || !data || !pkt)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "%s", what);

	Hatchery__V1__VmRequest first = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmWriteFileRequest body = HATCHERY__V1__VM_WRITE_FILE_REQUEST__INIT;
	body.path = (char *)path;
	body.mode = mode;
	body.uid = uid;
	body.gid = gid;
	body.size = size;
	first.body_case = HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE;
	first.write_file = &body;
	first.id = vm_next_id++;

	Hatchery__V1__VmRequest next = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmFileChunk chunk = HATCHERY__V1__VM_FILE_CHUNK__INIT;
	next.body_case = HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK;
	next.file_chunk = &chunk;
	next.id = first.id;

	/* Until the first packet is out, a failure leaves the socket in step;
	 * after it the VM waits for `size` bytes that will not come. */
	uint64_t sent = 0;
	bool in_flight = false;
	do {
		Hatchery__V1__VmRequest *req = in_flight ? &next : &first;
		ProtobufCBinaryData *bd = in_flight ? &chunk.data : &body.data;
		uint64_t left = size - sent;
		size_t n = fit_chunk(&req->base, bd, left < IPC_MAX_MSG ? (size_t)left
									: IPC_MAX_MSG);
		if (n == 0 && left && in_flight) { /* a chunk's envelope is tiny */
			hatch_err_set(err, E(INTERNAL), 0, "%s: no room for data", what);
			return vm_out_of_step(vm_fd);
		}
		ssize_t got = hatch_read_full(src_fd, data, n);
		if (got < 0) {
			hatch_err_set(err, E(INTERNAL), (int)-got, "%s %s: read the source",
				      what, path);
			return in_flight ? vm_out_of_step(vm_fd) : -1;
		}
		if ((size_t)got < n) {
			hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				      "%s %s: the source ended after %llu of %llu bytes",
				      what, path, (unsigned long long)(sent + (uint64_t)got),
				      (unsigned long long)size);
			return in_flight ? vm_out_of_step(vm_fd) : -1;
		}
		/* Before the last packet goes, make sure the source has no more:
		 * a file that changed under us must not arrive as a whole one. */
		if (sent + n == size) {
			uint8_t extra;
			ssize_t e = hatch_read_full(src_fd, &extra, 1);
			if (e != 0) {
				if (e < 0)
					hatch_err_set(err, E(INTERNAL), (int)-e,
						      "%s %s: read the source", what, path);
				else
					hatch_err_set(err, E(INVALID_ARGUMENT), 0,
						      "%s %s: the source has more than %llu bytes",
						      what, path, (unsigned long long)size);
				return in_flight ? vm_out_of_step(vm_fd) : -1;
			}
		}
		bd->data = data;
		size_t len = protobuf_c_message_get_packed_size(&req->base);
		if (len > WRITE_PKT_MAX) /* only the first packet: a long path */
			return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
					     "%s: path too long for one packet", what);
		protobuf_c_message_pack(&req->base, pkt);
		int r = ipc_send(vm_fd, pkt, len, NULL, 0, false);
		if (r < 0) {
			hatch_err_set(err, E(UNAVAILABLE), -r, "%s %s: send", what, path);
			return in_flight ? vm_out_of_step(vm_fd) : -1;
		}
		in_flight = true;
		sent += n;
	} while (sent < size);

	Hatchery__V1__VmReply *rep = NULL;
	int r = vm_recv(vm_fd, rx, first.id, what, &rep, err);
	if (r == VM_ERROR_REPLY)
		return -1;
	if (r < 0)
		return vm_out_of_step(vm_fd);
	if (rep->body_case != HATCHERY__V1__VM_REPLY__BODY_WRITE_FILE || !rep->write_file)
		return vm_unexpected(vm_fd, rep, what, err);
	TAKE_BODY(rep, write_file, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_read_file_cb(int vm_fd, const char *path, uint64_t max_size,
			  hatch_chunk_fn *on_chunk, void *ctx,
			  Hatchery__V1__VmReadFileReply **out,
			  struct hatch_err *err)
{
	static const char what[] = "read_file";
	uint8_t *buf = vm_rx_buf();
	if (!buf)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "%s", what);
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmReadFileRequest body = HATCHERY__V1__VM_READ_FILE_REQUEST__INIT;
	body.path = (char *)path;
	body.max_size = max_size;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_READ_FILE;
	req.read_file = &body;
	req.id = vm_next_id++;
	if (vm_send_first(vm_fd, &req, what, err) < 0)
		return -1;

	uint64_t limit = max_size ? max_size : READ_FILE_DEFAULT, got = 0;
	/* The callback's failure is reported once the operation is drained:
	 * the VM then serves on. */
	struct hatch_err cb_err = { 0 };
	bool stopped = false;
	for (;;) {
		Hatchery__V1__VmReply *rep = NULL;
		int r = vm_recv(vm_fd, buf, req.id, what, &rep, err);
		if (r == VM_ERROR_REPLY)
			return -1;
		if (r < 0)
			return vm_out_of_step(vm_fd);
		if (rep->body_case == HATCHERY__V1__VM_REPLY__BODY_FILE_CHUNK &&
		    rep->file_chunk) {
			const ProtobufCBinaryData *d = &rep->file_chunk->data;
			got += d->len;
			if (got > limit) {
				hatch_err_set(err, E(MALFORMED), 0,
					      "%s %s: the VM sent more than max_size (%llu bytes)",
					      what, path, (unsigned long long)limit);
				hatch_free(rep);
				return vm_out_of_step(vm_fd);
			}
			if (!stopped && on_chunk && d->len &&
			    on_chunk(ctx, d->data, d->len, &cb_err) != 0)
				stopped = true;
			hatch_free(rep);
			continue;
		}
		if (rep->body_case != HATCHERY__V1__VM_REPLY__BODY_READ_FILE || !rep->read_file)
			return vm_unexpected(vm_fd, rep, what, err);
		/* The operation is over either way: the socket is in step. */
		uint64_t said = rep->read_file->size;
		if (said != got) {
			hatch_free(rep);
			return hatch_err_set(err, E(MALFORMED), 0,
					     "%s %s: the VM sent %llu bytes but says %llu",
					     what, path, (unsigned long long)got,
					     (unsigned long long)said);
		}
		if (stopped) {
			hatch_free(rep);
			if (cb_err.code && err) {
				*err = cb_err;
				return -1;
			}
			if (cb_err.code)
				return -1;
			return hatch_err_set(err, E(INTERNAL), 0,
					     "%s %s: stopped by the caller", what, path);
		}
		TAKE_BODY(rep, read_file, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
		return 0;
	}
}

static int chunk_to_fd(void *ctx, const void *data, size_t len, struct hatch_err *err)
{
	int r = write_full(*(const int *)ctx, data, len);
	if (r < 0)
		return hatch_err_set(err, E(INTERNAL), -r, "read_file: write");
	return 0;
}

int hatch_vm_read_file(int vm_fd, const char *path, uint64_t max_size,
		       int dst_fd, Hatchery__V1__VmReadFileReply **out,
		       struct hatch_err *err)
{
	return hatch_vm_read_file_cb(vm_fd, path, max_size, chunk_to_fd, &dst_fd,
				     out, err);
}

int hatch_vm_list_dir(int vm_fd, const char *path,
		      Hatchery__V1__VmListDirReply **out, struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmListDirRequest body = HATCHERY__V1__VM_LIST_DIR_REQUEST__INIT;
	body.path = (char *)path;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR;
	req.list_dir = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call(vm_fd, &req, HATCHERY__V1__VM_REPLY__BODY_LIST_DIR, &rep, err) < 0)
		return -1;
	TAKE_BODY(rep, list_dir, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}

int hatch_vm_stat(int vm_fd, const char *path, Hatchery__V1__VmStatReply **out,
		  struct hatch_err *err)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmStatRequest body = HATCHERY__V1__VM_STAT_REQUEST__INIT;
	body.path = (char *)path;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_STAT;
	req.stat = &body;
	Hatchery__V1__VmReply *rep = NULL;
	if (vm_call(vm_fd, &req, HATCHERY__V1__VM_REPLY__BODY_STAT, &rep, err) < 0)
		return -1;
	if (!rep->stat || !rep->stat->stat) {
		hatch_free(rep);
		return hatch_err_set(err, E(MALFORMED), 0, "stat: reply without a stat");
	}
	TAKE_BODY(rep, stat, out, HATCHERY__V1__VM_REPLY__BODY__NOT_SET);
	return 0;
}
