/* restore.c - restore pools: the pool's snapshot (inherited at SNAP_FD)
 * into this child's VM, before ready (prerestore), on lease, or over the
 * used VM for the next lease (reuse = snapshot). See child.h. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "child/child.h"
#include "hatchery/clock.h"
#include "hatchery/v1/common.pb-c.h"
#include "hatchery/v1/control.pb-c.h"
#include "vmsnap.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Restore the pool's snapshot (inherited at SNAP_FD) into our fresh VM.
 * The supervisor checked the whole file at start-up; the file may have
 * been rewritten in place since (the fd follows the inode, not the path),
 * so compare the size and header CRC it recorded, and let
 * vmp_snap_restore() parse everything again, which catches a changed
 * section by its CRC. The memory data's CRCs are not checked (see
 * docs/snapshot.md, "What is not done"). */
int vmp_child_restore_pool_snapshot(struct child *ch, bool reset, struct hatch_err *err)
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
	int r = ch->lm ? vmp_child_linux_restore(ch, SNAP_FD, reset, &touched, err)
		: reset ? vmp_snap_reset(&ch->vm, s->kvm, SNAP_FD, &ch->guest, &st, &touched, err)
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
void vmp_child_restore_on_lease(struct child *ch)
{
	if (!ch->restore_pending)
		return;
	ch->restore_pending = false;
	struct hatch_err err = { 0 };
	if (vmp_child_restore_pool_snapshot(ch, false, &err) == 0)
		return;
	ch->restore_failed = true;
	ch->restore_err_code = err.code == E(FAILED_PRECONDITION) ? err.code : E(VM_ERROR);
	snprintf(ch->restore_err, sizeof(ch->restore_err), "%s", err.msg);
	vmp_child_send_failed(ch->restore_err);
}

/* reuse = snapshot, after a clean lease: restore the pool's snapshot over
 * the used VM (vmp_snap_reset: every guest page dropped, then the same
 * restore as at start-up, with a new seed), tell the supervisor, and take
 * the fresh VM socket it answers with. Returns 0 when we can serve again;
 * -1 when the child must exit (err filled). The old VM socket is closed
 * here: whatever the last client still sends is dropped with it. */
int vmp_child_reset_for_next_lease(struct child *ch, struct hatch_err *err)
{
	uint64_t t0 = hatch_now_ns();
	if (vmp_child_restore_pool_snapshot(ch, true, err) < 0)
		return -1;
	Hatchery__V1__ChildMsg out = HATCHERY__V1__CHILD_MSG__INIT;
	Hatchery__V1__ChildReset rst = HATCHERY__V1__CHILD_RESET__INIT;
	rst.reset_ns = hatch_now_ns() - t0;
	out.body_case = HATCHERY__V1__CHILD_MSG__BODY_RESET;
	out.reset = &rst;
	if (ipc_send_pb(CTRL_FD, &out.base, NULL, 0, false) < 0)
		return hatch_err_set(err, E(INTERNAL), 0, "reset: send ChildReset");
	/* SupLeased of the lease just ended may still be queued ahead of the
	 * answer: skip it. Nothing else is sent to a leased child. */
	uint64_t until = hatch_now_ns() + 5000000000ull;
	for (;;) {
		struct pollfd p = { .fd = CTRL_FD, .events = POLLIN };
		int64_t left = (int64_t)(until - hatch_now_ns()) / 1000000;
		if (left <= 0)
			return hatch_err_set(err, E(INTERNAL), 0, "reset: no SupVmSocket within 5 s");
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		struct ipc_msg m = { .buf = vmp_child_rx_buf };
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
