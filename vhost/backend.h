/* backend.h - the vhost-user block backend: one frontend connection.
 *
 * vhu_backend_serve() speaks vhost-user on a connected stream socket
 * until the frontend hangs up: the feature and protocol-feature
 * handshake (VIRTIO_F_VERSION_1 required; offered: CONFIG, REPLY_ACK, MQ
 * with one queue, CONFIGURE_MEM_SLOTS), SET_OWNER, the memory table
 * (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG), the vring messages,
 * GET_CONFIG; and serves the virtio-blk queue whenever its kick eventfd
 * fires. One thread; poll() on the socket and the kick eventfd.
 *
 * A frontend that breaks the protocol (a message the decoder refuses,
 * one that does not fit the state, a request that fails without
 * REPLY_ACK asked for) ends the connection: serve returns -1 with the
 * reason, and has released everything the connection brought (fds,
 * mappings). With REPLY_ACK negotiated and NEED_REPLY set, a failed
 * request gets status 1 and the connection goes on. A broken ring (what
 * a correct driver cannot produce) stops that ring; the err eventfd is
 * signalled.
 *
 * Ownership: the socket and the struct vhu_blk are borrowed; the caller
 * closes them. Nothing else outlives the call.
 */
#ifndef HATCHERY_VHOST_BACKEND_H
#define HATCHERY_VHOST_BACKEND_H

#include "blk.h"
#include "hatchery/error.h"

/* The virtio-blk device has one request queue. */
#define VHU_BLK_QUEUES 1u

/* Returns 0 when the frontend closed the connection, -1 with *err set
 * when the backend did (a protocol error, or a failed poll). */
int vhu_backend_serve(int conn, struct vhu_blk *blk, struct hatch_err *err);

#endif
