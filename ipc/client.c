/* client.c - synchronous client for hatcheryd and leased VMs. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
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

/* Common reply handling: Error -> hatch_err; body case must match. */
static int check_reply(const Hatchery__V1__Error *e, int body_case, int want_case,
		       const char *what, struct hatch_err *err)
{
	if (e && e->code != E(OK))
		return hatch_err_set(err, e->code, 0, "%s", e->message);
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

static int vm_call_fds(int vm_fd, Hatchery__V1__VmRequest *req, const int *fds,
		       size_t nfds, int want_case, Hatchery__V1__VmReply **out,
		       struct hatch_err *err)
{
	uint8_t *buf = vm_rx_buf();
	if (!buf)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "vm call");
	static _Atomic uint64_t next_id = 1;
	req->id = next_id++;
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
