/* children.c - a child's life from fork to reap, and where a dead child is
 * replaced.
 *
 * pool.c decides every transition of a child and the actions it asks for
 * (enum sup_action); apply() below is the one place that performs them:
 * the SIGKILL, closing its channels, the wake-up hint, health checks,
 * giving back its pidfd, jail slot and cgroup, serving waiters, and the
 * refill. A dead child is replaced by refill_pools() -> replenish() ->
 * spawn_one(), for every pool an ACT_REFILL marked dirty.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/control.pb-c.h"
#include "disk.h"
#include "loop.h"

/* A child that has not reported ready in this long is killed. */
#define SPAWN_TIMEOUT_NS (10ull * 1000 * 1000 * 1000)

/* ---- the actions ------------------------------------------------------- */

/* Our channels to a child that is dying or dead: its control socket and,
 * if it was never leased, the client's end of its VM socket. */
static void close_channels(struct server *s, struct sup_child *c)
{
	hatch_closep(&c->vm_fd);
	if (c->ctrl_fd < 0)
		return;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->ctrl_fd, NULL);
	hatch_closep(&c->ctrl_fd);
}

/* Give back what the jail held for a child that is gone (reaped, or never
 * started): its uid slot and its cgroup. */
static void release_jail(struct server *s, struct sup_child *c)
{
	if (c->slot >= 0 && (unsigned)c->slot < s->n_slots)
		s->slot_used[c->slot] = 0;
	c->slot = -1;
	if (c->disk_slot >= 0 && (unsigned)c->disk_slot < s->n_slots)
		s->slot_used[c->disk_slot] = 0;
	c->disk_slot = -1;
	if (c->in_cgroup)
		sup_cgroup_child_remove(s->o->cgroup, c->pool->cfg, c->id);
	c->in_cgroup = false;
}

/* Reaped (or never started): its pidfd, its jail, the child itself. */
static void release(struct server *s, struct sup_child *c)
{
	if (c->pidfd >= 0) {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
		hatch_closep(&c->pidfd);
	}
	if (c->disk_pidfd >= 0) {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->disk_pidfd, NULL);
		sup_disk_stop(c);
	}
	release_jail(s, c);
	sup_child_free(c);
	s->freed = true;
}

/* Waking an idle CPU costs ~15-20 us here (nested virtualisation). Wake
 * the leased child now, while the client is still receiving its reply, so
 * that it is running when the first request arrives (measured: first ping
 * p50 ~45 us instead of ~65). Sent after the reply, never before: the
 * wake-up IPI is itself a VM exit and must not delay the client. Only a
 * hint: the child changes no state on it. */
static void wake(struct sup_child *c)
{
	Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
	Hatchery__V1__SupLeased leased = HATCHERY__V1__SUP_LEASED__INIT;
	m.body_case = HATCHERY__V1__SUP_MSG__BODY_LEASED;
	m.leased = &leased;
	ipc_send_pb(c->ctrl_fd, &m.base, NULL, 0, true);
}

static void apply(struct server *s, struct sup_child *c, unsigned act)
{
	struct spool *sp = spool_of(c->pool);
	const struct sup_pool_config *cfg = c->pool->cfg;
	if (act & ACT_KILL)
		syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
	if (act & ACT_CLOSE)
		close_channels(s, c);
	if (act & ACT_WAKE)
		wake(c);
	if (act & ACT_HEALTH)
		c->next_health_at = hatch_now_ns() +
				    (uint64_t)cfg->health_interval_ms * 1000000ull;
	if (act & ACT_REFILL)
		sp->dirty = true;
	/* On two cores, a fork and a jailed VM build right now would compete
	 * with the client's first calls to the VM it just got. While other
	 * children are idle nobody needs the replacement yet: fork it a
	 * little later (the clock starts at the first lease, so a stream of
	 * leases cannot postpone it further). refill_due() decides. */
	if (act & ACT_REFILL_LATER) {
		if (!sp->refill_at)
			sp->refill_at = hatch_now_ns() + (uint64_t)cfg->refill_delay_us * 1000u;
		sp->dirty = true;
	}
	if (act & ACT_RELEASE)
		release(s, c); /* c is gone */
	/* Not while a dead child's last messages are drained (reap_child):
	 * its pool is about to change again. */
	if ((act & ACT_SERVE) && !s->reaping)
		serve_waiters(s, sp);
}

void child_event(struct server *s, struct sup_child *c, enum sup_child_event ev)
{
	unsigned act = sup_child_event(c, ev, hatch_now_ns());
	if (act & ACT_INVALID) {
		sup_debug("child %llu: event %d ignored in state %s",
			  (unsigned long long)c->id, ev, sup_child_state_name(c->state));
		return;
	}
	apply(s, c, act);
}

void kill_child(struct server *s, struct sup_child *c, enum sup_child_event why)
{
	if (c->state == CHILD_DYING || c->state == CHILD_DEAD)
		return;
	child_event(s, c, why);
}

/* ---- spawning and replacing --------------------------------------------- */

static int slot_alloc(struct server *s, int *slot)
{
	for (unsigned i = 0; i < s->n_slots; i++) {
		if (!s->slot_used[i]) {
			s->slot_used[i] = 1;
			*slot = (int)i;
			return 0;
		}
	}
	return -EAGAIN;
}

static int spawn_one(struct server *s, struct spool *sp)
{
	struct sup_child *c = sup_child_new(&sp->p, ++s->next_child_id, hatch_now_ns());
	if (!c)
		return -ENOMEM;
	struct hatch_err err = { 0 };
	int r = slot_alloc(s, &c->slot);
	/* A disk's backend is jailed as a uid of its own. */
	if (r == 0 && sp->p.cfg->disk[0])
		r = slot_alloc(s, &c->disk_slot);
	if (r < 0)
		hatch_err_set(&err, E(INTERNAL), 0, "no free jail slot");
	else if (sup_spawn(c, s->o, &err) < 0)
		r = err.sys_errno ? -err.sys_errno : -EIO;
	if (r == 0)
		r = ep_add(s, c->ctrl_fd, EPOLLIN, c, TAG_CTRL);
	if (r == 0 && c->disk_pidfd >= 0)
		r = ep_add(s, c->disk_pidfd, EPOLLIN, c, TAG_DISK);
	if (r == 0)
		r = ep_add(s, c->pidfd, EPOLLIN, c, TAG_PIDFD);
	if (r < 0) {
		char msg[HATCH_ERR_MSG_MAX + 16];
		snprintf(msg, sizeof(msg), "spawn: %s", err.msg[0] ? err.msg : strerror(-r));
		sup_log("pool %s: %s", sp->p.cfg->name, msg);
		sup_pool_set_error(&sp->p, msg);
		/* Not in the epoll set: the pidfd is added last. */
		hatch_pidfd_killp(&c->pidfd);
		child_event(s, c, EV_CRASH); /* a spawn failure; frees c */
		return r;
	}
	sup_debug("pool %s: spawned child %llu pid %d", sp->p.cfg->name,
		  (unsigned long long)c->id, c->pid);
	return 0;
}

static void replenish(struct server *s, struct spool *sp)
{
	if (s->stopping)
		return;
	unsigned n = sup_pool_spawn_needed(&sp->p, hatch_now_ns());
	for (unsigned i = 0; i < n; i++)
		if (spawn_one(s, sp) < 0)
			break;
}

/* Is it time to replenish `sp`? Yes unless a refill delay is running and
 * the pool can still serve without it (idle children left, nobody
 * waiting); then the timer is armed for the end of the delay. */
static bool refill_due(struct server *s, struct spool *sp)
{
	if (!sp->refill_at || sp->p.count[CHILD_READY] == 0 || sp->p.waiting)
		return true;
	if (hatch_now_ns() >= sp->refill_at)
		return true;
	arm_timer(s, sp->refill_at);
	return false;
}

void refill_pools(struct server *s)
{
	for (size_t i = 0; i < s->n_pools; i++) {
		struct spool *sp = s->pools[i];
		if (sp->dirty && refill_due(s, sp)) {
			sp->dirty = false;
			sp->refill_at = 0;
			replenish(s, sp);
		}
	}
}

/* ---- reaping ------------------------------------------------------------ */

/* How a child that died unasked died, for the log and the pool's error. */
static void death_message(const struct sup_child *c, const siginfo_t *si, char *msg,
			  size_t cap)
{
	const char *state = sup_child_state_name(sup_child_life_state(c));
	if (si->si_code != CLD_EXITED && si->si_status == SIGSYS) {
		char name[64];
		if (c->seccomp_reported)
			snprintf(msg, cap,
				 "child %d killed by seccomp: syscall %d (%s) is not "
				 "allowed, in state %s", c->pid, c->seccomp_syscall,
				 vmp_jail_syscall_name(c->seccomp_syscall, c->seccomp_arch,
						       name, sizeof(name)), state);
		else
			snprintf(msg, cap,
				 "child %d killed by SIGSYS (seccomp; it did not report "
				 "the syscall) in state %s", c->pid, state);
	} else if (si->si_code == CLD_EXITED) {
		snprintf(msg, cap, "child %d exited with status %d in state %s", c->pid,
			 si->si_status, state);
	} else {
		snprintf(msg, cap, "child %d killed by signal %d (%s) in state %s", c->pid,
			 si->si_status, strsignal(si->si_status), state);
	}
}

/* The pidfd fired: reap, account, free. */
void reap_child(struct server *s, struct sup_child *c)
{
	siginfo_t si = { 0 };
	if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return; /* not yet (spurious wakeup) */
	bool clean = si.si_code == CLD_EXITED && si.si_status == 0;
	bool sigsys = si.si_code != CLD_EXITED && si.si_status == SIGSYS;
	struct sup_pool *p = c->pool;
	/* Its last words may still be queued behind the pidfd event: a
	 * seccomp report, a ChildFailed. Read them before judging. Nothing
	 * read here frees the child. */
	s->reaping = true;
	for (int i = 0; i < 8 && !clean && c->ctrl_fd >= 0; i++)
		handle_ctrl(s, c);
	s->reaping = false;
	if (!clean && c->killed == KILL_NONE) {
		char msg[256];
		death_message(c, &si, msg, sizeof(msg));
		sup_log("pool %s: %s", p->cfg->name, msg);
		if (c->state == CHILD_SPAWNING && !c->spawn_failed_msg)
			sup_pool_set_error(p, msg);
	} else if (clean && c->killed == KILL_NONE &&
		   sup_child_life_state(c) == CHILD_READY) {
		sup_log("pool %s: idle child %d exited unasked", p->cfg->name, c->pid);
	}
	child_event(s, c, clean ? EV_EXIT : sigsys ? EV_SECCOMP : EV_CRASH); /* frees c */
}

/* A disk backend's pidfd fired. One that exits while its child lives has
 * taken the VM's disk with it: the child sees its connection hang up and
 * ends its lease with that error; an idle or spawning child is killed
 * here at once (nobody would see its error before a health check). */
void reap_disk(struct server *s, struct sup_child *c)
{
	char msg[256];
	if (!sup_disk_reap(c, msg, sizeof(msg)))
		return;
	struct sup_pool *p = c->pool;
	if (c->state == CHILD_DYING || c->state == CHILD_DEAD)
		return; /* it went first: the backend's end was expected */
	p->stats.disk_backend_exits++;
	sup_log("pool %s: %s; the VM ends", p->cfg->name, msg);
	sup_pool_set_error(p, msg);
	if (c->state != CHILD_LEASED)
		kill_child(s, c, EV_KILL_PROTOCOL);
}

/* Teardown: anything still here after the reap deadline (it should not
 * happen: SIGKILL cannot be ignored) is waited for synchronously. */
void children_free_all(struct server *s)
{
	for (size_t i = 0; i < s->n_pools; i++) {
		struct sup_pool *p = &s->pools[i]->p;
		for (int st = 0; st < CHILD__NSTATES; st++) {
			while (p->list[st]) {
				struct sup_child *c = p->list[st];
				hatch_pidfd_killp(&c->pidfd);
				sup_disk_stop(c);
				hatch_closep(&c->ctrl_fd);
				hatch_closep(&c->vm_fd);
				release_jail(s, c);
				sup_child_free(c);
			}
		}
	}
}

/* ---- health checks ------------------------------------------------------ */

static void ping(struct sup_child *c, uint64_t now)
{
	Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
	Hatchery__V1__SupPing p = HATCHERY__V1__SUP_PING__INIT;
	p.seq = ++c->ping_seq;
	m.body_case = HATCHERY__V1__SUP_MSG__BODY_PING;
	m.ping = &p;
	/* A full control socket means the child is not reading: that is a
	 * missed health check in the making, so just count the ping as sent. */
	ipc_send_pb(c->ctrl_fd, &m.base, NULL, 0, true);
	c->ping_sent_at = now;
}

/* Refresh and reload: retire idle children no longer wanted, one per pool
 * per tick so a pool's children are replaced one after the other, each
 * only once its replacement is ready (the refill over-provisions by one
 * while a candidate waits: sup_pool_spawn_needed). A removed pool's idle
 * and still-building children all go at once: nothing replaces them.
 * Leased children are never candidates. */
static void retire_idle(struct server *s, struct spool *sp, uint64_t now)
{
	struct sup_pool *p = &sp->p;
	if (p->removed) {
		while (p->list[CHILD_READY])
			kill_child(s, p->list[CHILD_READY], EV_RETIRE);
		while (p->list[CHILD_SPAWNING])
			kill_child(s, p->list[CHILD_SPAWNING], EV_RETIRE);
		return;
	}
	struct sup_child *c = sup_pool_retire_candidate(p, now);
	if (!c || !sup_pool_may_retire(p))
		return;
	sup_log("pool %s: retiring idle child %d: %s", p->cfg->name, c->pid,
		c->gen != p->gen ? "built for an earlier configuration"
				 : "idle longer than max_idle_age_ms");
	kill_child(s, c, EV_RETIRE);
}

void check_children(struct server *s, struct spool *sp, uint64_t now)
{
	struct sup_pool *p = &sp->p;
	const struct sup_pool_config *cfg = p->cfg;
	uint64_t timeout = (uint64_t)cfg->health_timeout_ms * 1000000ull;
	struct sup_child *c, *nx;
	for (c = p->list[CHILD_READY]; c; c = nx) {
		nx = c->next;
		if (c->ping_sent_at && now - c->ping_sent_at > timeout) {
			sup_log("pool %s: child %d missed its health check (%u ms); "
				"killing it", cfg->name, c->pid, cfg->health_timeout_ms);
			kill_child(s, c, EV_KILL_HEALTH);
		} else if (!c->ping_sent_at && now >= c->next_health_at) {
			ping(c, now);
		}
	}
	retire_idle(s, sp, now);
	/* A Linux child enforces its own boot deadline and says why it
	 * missed it (the console's last lines); this is the backstop. */
	uint64_t spawn_timeout = cfg->linux_machine
		? (uint64_t)cfg->boot_timeout_ms * 1000000ull + SPAWN_TIMEOUT_NS
		: SPAWN_TIMEOUT_NS;
	for (c = p->list[CHILD_SPAWNING]; c; c = nx) {
		nx = c->next;
		if (now - c->t_fork > spawn_timeout) {
			sup_log("pool %s: child %d not ready after %llu s; killing it",
				cfg->name, c->pid,
				(unsigned long long)(spawn_timeout / 1000000000ull));
			sup_pool_set_error(p, "child did not report ready in time");
			kill_child(s, c, EV_KILL_SPAWN_TIMEOUT);
		}
	}
}

/* ---- the control channel ------------------------------------------------ */

/* ChildReset: a reuse = snapshot child restored its snapshot after a clean
 * lease. Give it the child's end of a fresh VM socket (the last client
 * may still hold the old one's other end: never reuse it), keep ours for
 * the next lease, and count it idle. Anything odd about the claim kills
 * it: a replacement is cheaper than trusting it. */
static void child_reset(struct server *s, struct sup_child *c, uint64_t reset_ns)
{
	struct sup_pool *p = c->pool;
	if (s->reaping)
		return; /* it is dead already: the reap accounts */
	/* Its lease is over; a reload since made it an old generation (or
	 * removed its pool): it is not made idle again. */
	if (c->state == CHILD_LEASED && (c->gen != p->gen || p->removed)) {
		sup_log("pool %s: child %d reset after its lease, but it was built for "
			"an earlier configuration; retiring it", p->cfg->name, c->pid);
		kill_child(s, c, EV_RETIRE);
		return;
	}
	if (c->state != CHILD_LEASED || p->cfg->reuse != SUP_REUSE_SNAPSHOT ||
	    c->vm_fd >= 0) {
		sup_log("pool %s: child %d reported a reset in state %s (reuse = %s); "
			"killing it", p->cfg->name, c->pid, sup_child_state_name(c->state),
			sup_reuse_mode_name(p->cfg->reuse));
		kill_child(s, c, EV_KILL_PROTOCOL);
		return;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		sup_log("pool %s: child %d: socketpair for its next lease: %s; killing it",
			p->cfg->name, c->pid, strerror(errno));
		kill_child(s, c, EV_KILL_PROTOCOL);
		return;
	}
	_cleanup_close_ int ours = sv[0], theirs = sv[1];
	Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
	Hatchery__V1__SupVmSocket vs = HATCHERY__V1__SUP_VM_SOCKET__INIT;
	m.body_case = HATCHERY__V1__SUP_MSG__BODY_VM_SOCKET;
	m.vm_socket = &vs;
	int r = ipc_send_pb(c->ctrl_fd, &m.base, &theirs, 1, true);
	if (r < 0) {
		sup_log("pool %s: child %d: send its new VM socket: %s; killing it",
			p->cfg->name, c->pid, ipc_strerror(r));
		kill_child(s, c, EV_KILL_PROTOCOL);
		return;
	}
	c->vm_fd = steal_fd(&ours);
	sup_debug("pool %s: child %d reset to its snapshot in %.3f ms", p->cfg->name,
		  c->pid, (double)reset_ns / 1e6);
	child_event(s, c, EV_RESET);
}

static void child_says(struct server *s, struct sup_child *c,
		       const Hatchery__V1__ChildMsg *msg)
{
	struct sup_pool *p = c->pool;
	switch (msg->body_case) {
	case HATCHERY__V1__CHILD_MSG__BODY_READY:
		sup_debug("pool %s: child %d ready in %.3f ms", p->cfg->name, c->pid,
			  (double)(hatch_now_ns() - c->t_fork) / 1e6);
		child_event(s, c, EV_READY);
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_PONG:
		if (c->ping_sent_at && msg->pong->seq == c->ping_seq) {
			c->ping_sent_at = 0;
			c->next_health_at = hatch_now_ns() +
					    (uint64_t)p->cfg->health_interval_ms * 1000000ull;
		}
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_FAILED:
		/* A leased child says so when its restore on lease failed. */
		sup_log("pool %s: child %d failed %s: %s", p->cfg->name, c->pid,
			c->state == CHILD_LEASED ? "on lease" : "to start",
			msg->failed->message);
		sup_pool_set_error(p, msg->failed->message);
		c->spawn_failed_msg = true;
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_RESET:
		child_reset(s, c, msg->reset->reset_ns);
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_SECCOMP_VIOLATION:
		/* Its SIGSYS handler speaking; the SIGSYS death follows and
		 * is logged, with this syscall, when the pidfd fires. */
		c->seccomp_reported = true;
		c->seccomp_syscall = msg->seccomp_violation->syscall;
		c->seccomp_arch = msg->seccomp_violation->arch;
		break;
	default:
		break;
	}
}

static void child_msg_freep(Hatchery__V1__ChildMsg **m)
{
	if (*m)
		hatchery__v1__child_msg__free_unpacked(*m, NULL);
}

void handle_ctrl(struct server *s, struct sup_child *c)
{
	struct ipc_msg m = { .buf = s->rx };
	int r = ipc_recv(c->ctrl_fd, &m, true);
	if (r == -EAGAIN)
		return;
	if (r <= 0) {
		/* EOF: the child is exiting; its pidfd will tell us when. An
		 * idle one must not be handed out meanwhile. */
		child_event(s, c, EV_HANGUP);
		return;
	}
	ipc_msg_close_fds(&m); /* children never send fds */
	__attribute__((cleanup(child_msg_freep))) Hatchery__V1__ChildMsg *msg =
		hatchery__v1__child_msg__unpack(NULL, m.len, m.buf);
	if (!msg) {
		sup_log("pool %s: child %d sent garbage on its control channel; killing it",
			c->pool->cfg->name, c->pid);
		kill_child(s, c, EV_KILL_PROTOCOL);
		return;
	}
	child_says(s, c, msg);
}
