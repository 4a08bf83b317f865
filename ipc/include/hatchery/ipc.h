/* ipc.h - packet framing and fd passing over SOCK_SEQPACKET unix sockets.
 *
 * Every conversation in hatchery is one protobuf message per packet. The
 * receiver bounds a packet at IPC_MAX_MSG bytes before anything is decoded:
 * a longer packet is reported as -EMSGSIZE (the kernel discards the rest).
 * File descriptors ride in SCM_RIGHTS on the packet they belong to; at most
 * IPC_MAX_FDS are accepted and a packet carrying more is rejected with all of
 * its fds closed. EINTR is retried here and nowhere else.
 *
 * Ownership: fds passed to ipc_send() stay the caller's. fds received into a
 * struct ipc_msg belong to the message until taken with ipc_msg_take_fd();
 * ipc_msg_close_fds() closes the rest.
 */
#ifndef HATCHERY_IPC_H
#define HATCHERY_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "hatchery/error.h"

#define IPC_MAX_MSG (64 * 1024) /* hard limit on one packet, both directions */
#define IPC_MAX_FDS 4           /* most fds accepted on one packet */

struct ipc_msg {
	uint8_t *buf;  /* caller's buffer, at least IPC_MAX_MSG bytes */
	size_t len;    /* bytes received */
	int fds[IPC_MAX_FDS];
	size_t nfds;
};

/* Send one packet carrying nfds fds (copies are made by the kernel).
 * MSG_NOSIGNAL: a gone peer is -EPIPE, never SIGPIPE. With `nonblock`,
 * a full socket is -EAGAIN. Returns 0 or -errno. */
int ipc_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds,
	     bool nonblock);

/* Pack `msg` and send it as one packet. -EMSGSIZE if it packs larger than
 * IPC_MAX_MSG. Returns 0 or -errno. */
int ipc_send_pb(int sock, const ProtobufCMessage *msg, const int *fds,
		size_t nfds, bool nonblock);

/* Receive one packet into m->buf. Returns:
 *    1  a packet (m->len bytes, m->nfds fds)
 *    0  end of stream (peer closed)
 *   -EAGAIN      nothing to read (nonblock)
 *   -EMSGSIZE    packet longer than IPC_MAX_MSG; discarded, its fds closed
 *   -ETOOMANYREFS more than IPC_MAX_FDS fds (control data truncated);
 *                 discarded, the fds that arrived closed
 *   -errno       any other socket error
 * Any non-fd ancillary data is ignored. Received fds are O_CLOEXEC.
 * A peer that closed with our packets unread does not hide what it sent
 * before it went: those packets come first, then end of stream. */
int ipc_recv(int sock, struct ipc_msg *m, bool nonblock);

/* Check that the packet carries exactly `want` fds. If not, closes all of
 * them and returns -EBADMSG. */
int ipc_msg_expect_fds(struct ipc_msg *m, size_t want);

/* Take fd i out of the message (the caller owns it now). */
int ipc_msg_take_fd(struct ipc_msg *m, size_t i);

/* Close every fd still owned by the message. */
void ipc_msg_close_fds(struct ipc_msg *m);

/* Human-readable reason for an ipc_recv/ipc_send failure code. */
const char *ipc_strerror(int r);

/* Read len bytes from fd (a file or a stream socket), fewer only at end of
 * file; EINTR is retried. Returns the bytes read, or -errno. */
ssize_t hatch_read_full(int fd, void *buf, size_t len);

#endif
