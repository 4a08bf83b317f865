/* agent_client.h - the host's side of the agent channel, for tests: frames
 * out and in on a stream fd, and one helper per operation that collects all
 * of its replies. Shared by test_agent.c (the agent in test mode on a
 * socketpair) and test_agent_qemu.c (the agent as /init in a QEMU VM).
 * Every helper asserts (Criterion) rather than returning errors.
 */
#ifndef HATCH_TEST_AGENT_CLIENT_H
#define HATCH_TEST_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hatchery/v1/common.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"

#define MAX_FRAME 65536u /* the channel's bound on a frame, both ways */
#define E_AGENT HATCHERY__V1__ERROR_CODE__AGENT_ERROR

typedef Hatchery__V1__VmRequest Req;
typedef Hatchery__V1__VmReply Reply;

/* One agent: the host's end of its channel. */
struct agent {
	int fd;       /* stream socket */
	pid_t pid;    /* the agent (test mode) or QEMU */
	char dir[64]; /* a temp dir of the test's own */
};

/* An Exec to make; unset fields are the request's defaults. */
struct run {
	char **argv; /* NULL-terminated: ARGV("sh", "-c", "...") */
	char **env;  /* NULL-terminated or NULL */
	const char *cwd;
	const void *in;
	size_t in_len;
	uint32_t timeout_ms;
	uint64_t limit;
	uint32_t uid, gid;
};

/* What an Exec answered: an Error, or the output and the final reply. */
struct result {
	int code; /* Error code, 0 if none */
	uint32_t guest_errno;
	char msg[512];
	Hatchery__V1__VmExecReply x; /* scalars only: no pointers into freed replies */
	uint8_t *out, *err;          /* NUL-terminated beyond *_len; result_free() */
	size_t out_len, err_len;
	uint64_t wall_ms;
};

#define ARGV(...) ((char **)(const char *[]){ __VA_ARGS__, NULL })

/* Frames. recv_reply*: the next reply (caller frees with
 * hatchery__v1__vm_reply__free_unpacked), NULL at EOF; fails the test past
 * the time bound (scaled by HATCH_TEST_SLOWDOWN). */
void send_raw(struct agent *a, const void *p, size_t n);
void send_req(struct agent *a, const Req *r);
bool recv_exact(struct agent *a, void *p, size_t n, uint64_t deadline);
Reply *recv_reply_ms(struct agent *a, unsigned ms);
Reply *recv_reply(struct agent *a); /* 10 s */

/* Operations. */
void ping(struct agent *a, uint64_t id);
void append(uint8_t **buf, size_t *len, const ProtobufCBinaryData *d);
struct result exec_run(struct agent *a, uint64_t id, const struct run *run);
void result_free(struct result *r);
/* `sh -c script`, asserted to exit 0. */
struct result sh_ok(struct agent *a, uint64_t id, const char *script);
/* WriteFile: `first` bytes in the first packet, the rest in chunks of
 * `chunk`; returns the one reply. */
Reply *write_file(struct agent *a, uint64_t id, const char *path, const uint8_t *data,
		  size_t n, uint32_t mode, size_t first, size_t chunk);
/* ReadFile: the chunks' bytes into *data (caller frees), returns the
 * final reply or the error. */
Reply *read_file(struct agent *a, uint64_t id, const char *path, uint64_t max,
		 uint8_t **data, size_t *len);

#endif
