/* agent.h - the Linux guest agent's internal face: one struct agent that
 * main.c owns and passes to every part, and the parts' entry points.
 *
 *   main.c   arguments, the serve loop, dispatch, reaping
 *   init.c   PID 1's duties: mounts, modules, /dev/hvc0, fatal -> reboot
 *   chan.c   the channel: read frames into requests, send replies
 *   frame.c  framing and request checks (pure; fuzzed)
 *   exec.c   Exec: run a program, stream its output
 *   files.c  WriteFile, ReadFile, ListDir, Stat
 *   resume.c AgentResume: the host's time and entropy after a restore
 *
 * One operation at a time (vm.proto): nothing here is concurrent, and the
 * only asynchronous event is SIGCHLD, read through a signalfd.
 */
#ifndef HATCH_AGENT_H
#define HATCH_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"
#include "hatchery/error.h"
#include "hatchery/v1/common.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"

/* Data per exec_output / file_chunk frame: the frame's envelope (id, tags,
 * lengths: < 32 bytes) keeps it well under AGENT_MAX_FRAME. */
#define AGENT_CHUNK (60u * 1024)

struct agent {
	bool pid1;     /* /init of a guest: never exits, fatal -> reboot */
	int chan_fd;   /* /dev/hvc0, or --channel-fd in test mode */
	int sig_fd;    /* signalfd for SIGCHLD (blocked) */
	bool lost;     /* the channel is gone or desynchronised: stop serving */
	bool eof;      /* ... because the host closed it (test mode: exit 0) */
	/* A request read while another operation waited for its own frames
	 * (a WriteFile that got something other than its file_chunk): the
	 * serve loop takes it next. Owned here. */
	Hatchery__V1__VmRequest *pending;
	/* The running Exec's own child, so the reaper can tell its status
	 * from an orphan's. 0 when no Exec runs. */
	pid_t exec_pid;
	bool exec_reaped;
	int exec_status;
	uint64_t exec_end_ns;
	struct agent_rx rx;
	uint8_t tx[AGENT_HDR + AGENT_MAX_FRAME];
};

/* ---- main.c ---- */
/* Reap every exited child (waitpid(-1)); the Exec's own is recorded in
 * a->exec_*. Drains the signalfd first. */
void agent_reap(struct agent *a);
/* VmReply{id, agent_ready}, filled now: the hello (id 0) and the answer
 * to an AgentResume. */
void agent_send_ready(struct agent *a, uint64_t id, bool clock_set);

/* ---- init.c ---- */
/* PID 1 only: mounts, modules, wait for /dev/hvc0, raw mode. Returns the
 * channel fd; on failure calls agent_fatal(). */
int agent_init_system(void);
/* One line to the console, then reboot (PID 1) or exit(1) (test mode). */
void agent_fatal(bool pid1, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
/* One line to the console (fd 2), prefixed "hatchery-agent: ". */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- chan.c ---- */
/* The next request (caller frees with hatchery__v1__vm_request__free_unpacked),
 * or NULL when the channel is lost or at EOF (a->lost set). Frames that do
 * not decode are answered (MALFORMED, id 0) and skipped. */
Hatchery__V1__VmRequest *chan_recv(struct agent *a);
/* Send one reply. -errno on failure, and a->lost is set. */
int chan_send(struct agent *a, const Hatchery__V1__VmReply *r);
/* Send VmReply{id, error{code, guest_errno, message}}. guest_errno is
 * e->sys_errno for AGENT_ERROR. */
int chan_send_error(struct agent *a, uint64_t id, const struct hatch_err *e);

/* ---- exec.c / files.c: each sends all of its operation's replies ---- */
void agent_exec(struct agent *a, uint64_t id, const Hatchery__V1__VmExecRequest *x);
/* With `refused` (the request failed its checks but its size is sane), the
 * file_chunks are still read and dropped, and the reply is that error: one
 * reply per operation, after its last packet, as when open fails. */
void agent_write_file(struct agent *a, uint64_t id, const Hatchery__V1__VmWriteFileRequest *w,
		      const struct hatch_err *refused);
void agent_read_file(struct agent *a, uint64_t id, const Hatchery__V1__VmReadFileRequest *r);
void agent_list_dir(struct agent *a, uint64_t id, const Hatchery__V1__VmListDirRequest *l);
void agent_stat(struct agent *a, uint64_t id, const Hatchery__V1__VmStatRequest *s);

/* ---- resume.c ---- */
/* The request passed agent_request_check (entropy 32..256 bytes). */
void agent_resume(struct agent *a, uint64_t id, const Hatchery__V1__VmAgentResume *rs);

#endif
